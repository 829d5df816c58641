import React, { useState } from "react";

/** Props of the counter. */
interface CounterProps {
  start: number;
  label?: string;
}

/** A button that counts its clicks. */
export function Counter({ start, label }: CounterProps) {
  const [count, setCount] = useState(start);
  return (
    <button onClick={() => setCount(count + 1)}>
      {label ?? "Count"}: {count}
    </button>
  );
}

export const Title = ({ text }: { text: string }) => <h1 className="title">{text}</h1>;

/** A list of counters. */
export class Board extends React.Component<{ size: number }> {
  render() {
    const items = [];
    for (let i = 0; i < this.props.size; i++) {
      items.push(<Counter key={i} start={i} />);
    }
    return <div>{items}</div>;
  }

  componentDidMount() {
    console.log("mounted");
  }
}

export default function App() {
  return (
    <main>
      <Title text="Counters" />
      <Board size={3} />
    </main>
  );
}

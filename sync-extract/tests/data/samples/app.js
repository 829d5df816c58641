// A small event store.
import { EventEmitter } from "events";

const DEFAULT_LIMIT = 100;

/**
 * Formats an event for the log.
 */
function formatEvent(event) {
  return `${event.type}: ${JSON.stringify(event.payload)}`;
}

/** Keeps events in memory. */
export class EventStore extends EventEmitter {
  constructor(limit = DEFAULT_LIMIT) {
    super();
    this.limit = limit;
    this.events = [];
  }

  /** Adds an event and tells listeners. */
  add(event) {
    this.events.push(event);
    if (this.events.length > this.limit) {
      this.events.shift();
    }
    this.emit("added", event);
  }

  /** Events of one type. */
  ofType(type) {
    return this.events.filter((e) => e.type === type);
  }
}

export const summarize = (store) => {
  const counts = {};
  for (const e of store.events) {
    counts[e.type] = (counts[e.type] || 0) + 1;
  }
  return counts;
};

export function* replay(store) {
  for (const e of store.events) {
    yield formatEvent(e);
  }
}

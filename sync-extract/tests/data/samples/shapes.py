"""Shapes and their areas."""

import math
from dataclasses import dataclass


def _square(x):
    """The square of x."""
    return x * x


@dataclass
class Point:
    """A point in the plane."""

    x: float
    y: float

    def distance(self, other):
        """The distance to another point."""
        return math.sqrt(_square(self.x - other.x) + _square(self.y - other.y))


class Shape:
    """A shape with an area."""

    def area(self):
        raise NotImplementedError

    class Meta:
        """Metadata of a shape."""

        def describe(self):
            return "a shape"


class Circle(Shape):
    """A circle."""

    def __init__(self, center, radius):
        self.center = center
        self.radius = radius

    @property
    def area(self):
        """The area of the circle."""
        return math.pi * _square(self.radius)

    @staticmethod
    def unit():
        return Circle(Point(0, 0), 1)


def total_area(shapes):
    """The sum of the areas of shapes."""
    total = 0
    for shape in shapes:
        total += shape.area
    return total


if __name__ == "__main__":
    print(total_area([Circle.unit()]))

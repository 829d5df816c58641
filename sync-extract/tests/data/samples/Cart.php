<?php

namespace Shop;

use InvalidArgumentException;

/**
 * A shopping cart.
 */
class Cart
{
    private array $items = [];

    /**
     * Adds a product.
     */
    public function add(string $sku, int $qty = 1): void
    {
        if ($qty < 1) {
            throw new InvalidArgumentException("qty must be positive");
        }
        $this->items[$sku] = ($this->items[$sku] ?? 0) + $qty;
    }

    /** The total number of items. */
    public function count(): int
    {
        return array_sum($this->items);
    }
}

interface PriceList
{
    public function price(string $sku): float;
}

trait Discounts
{
    public function discount(float $total): float
    {
        return $total > 100 ? $total * 0.9 : $total;
    }
}

/** Formats a price. */
function format_price(float $price): string
{
    return number_format($price, 2) . " EUR";
}

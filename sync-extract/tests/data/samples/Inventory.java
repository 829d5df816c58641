package com.example.inventory;

import java.util.HashMap;
import java.util.Map;

/**
 * Keeps track of items in stock.
 */
public class Inventory {
    private final Map<String, Integer> stock = new HashMap<>();

    /** Creates an empty inventory. */
    public Inventory() {
    }

    /**
     * Adds items to the stock.
     */
    @Deprecated
    public void add(String item, int count) {
        if (count <= 0) {
            throw new IllegalArgumentException("count must be positive");
        }
        stock.merge(item, count, Integer::sum);
    }

    /** Removes items; returns false when there are not enough. */
    public boolean remove(String item, int count) {
        int have = stock.getOrDefault(item, 0);
        if (have < count) {
            return false;
        }
        stock.put(item, have - count);
        return true;
    }

    /** A line of a report. */
    public static class Line {
        final String item;
        final int count;

        Line(String item, int count) {
            this.item = item;
            this.count = count;
        }

        @Override
        public String toString() {
            return item + ": " + count;
        }
    }

    interface Listener {
        void changed(String item);
    }

    enum Status { IN_STOCK, OUT_OF_STOCK }
}

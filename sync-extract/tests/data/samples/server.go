// Package server serves a key-value store over HTTP.
package server

import (
	"encoding/json"
	"net/http"
	"sync"
)

// MaxKeyLen is the longest key accepted.
const MaxKeyLen = 256

// Store is a concurrent map.
type Store struct {
	mu   sync.RWMutex
	data map[string]string
}

// NewStore returns an empty store.
func NewStore() *Store {
	return &Store{data: make(map[string]string)}
}

// Get returns the value of key.
func (s *Store) Get(key string) (string, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	v, ok := s.data[key]
	return v, ok
}

// Set stores value under key.
func (s *Store) Set(key, value string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.data[key] = value
}

// ServeHTTP answers GET and PUT requests.
func (s *Store) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	key := r.URL.Path
	if len(key) > MaxKeyLen {
		http.Error(w, "key too long", http.StatusBadRequest)
		return
	}
	switch r.Method {
	case http.MethodGet:
		v, ok := s.Get(key)
		if !ok {
			http.NotFound(w, r)
			return
		}
		json.NewEncoder(w).Encode(v)
	case http.MethodPut:
		var v string
		if err := json.NewDecoder(r.Body).Decode(&v); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.Set(key, v)
	}
}

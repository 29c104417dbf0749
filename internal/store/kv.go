package store

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/dgraph-io/badger/v4"
)

// filePrefix namespaces file metadata among the other packages' keys.
const filePrefix = "file/"

// Put stores val under key. Other packages namespace their keys with a
// prefix of their own ("sync/", "job/").
func (s *Store) Put(key string, val []byte) error {
	return s.db.Update(func(txn *badger.Txn) error { return txn.Set([]byte(key), val) })
}

// Get returns the value under key, or ErrNotFound.
func (s *Store) Get(key string) ([]byte, error) {
	var val []byte
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte(key))
		if err != nil {
			return err
		}
		val, err = item.ValueCopy(nil)
		return err
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	return val, nil
}

// Delete removes key; a missing key is not an error.
func (s *Store) Delete(key string) error {
	return s.db.Update(func(txn *badger.Txn) error { return txn.Delete([]byte(key)) })
}

// Scan calls fn for every key with prefix, in key order, with the prefix
// stripped. fn must not keep val.
func (s *Store) Scan(prefix string, fn func(key string, val []byte) error) error {
	return s.scan(prefix, fn)
}

func (s *Store) scan(prefix string, fn func(key string, val []byte) error) error {
	return s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 100, Prefix: []byte(prefix)})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			key := strings.TrimPrefix(string(item.Key()), prefix)
			if err := item.Value(func(val []byte) error { return fn(key, val) }); err != nil {
				return err
			}
		}
		return nil
	})
}

// badgerLogger adapts badger's printf logger to slog. Its lines carry
// subsystem=badger: "component" is the key main gives each package's
// logger, once, and a package never adds it again (a JSON line would carry
// it twice). Badger's Info (tables opened, compactions) is about its
// internals, so it goes to Debug; its Debug traces every write and is
// dropped.
type badgerLogger struct{ log *slog.Logger }

func newBadgerLogger(log *slog.Logger) badgerLogger {
	return badgerLogger{log.With("subsystem", "badger")}
}

func (l badgerLogger) Errorf(f string, a ...any) {
	l.log.Error(strings.TrimSpace(fmt.Sprintf(f, a...)))
}
func (l badgerLogger) Warningf(f string, a ...any) {
	l.log.Warn(strings.TrimSpace(fmt.Sprintf(f, a...)))
}
func (l badgerLogger) Infof(f string, a ...any) { l.log.Debug(strings.TrimSpace(fmt.Sprintf(f, a...))) }
func (l badgerLogger) Debugf(string, ...any)    {}

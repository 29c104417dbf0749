// Package logtest holds what tests of log lines share.
package logtest

import (
	"bytes"
	"encoding/json"
)

// JSONKeys returns the keys of one JSON log line, in order, nested
// objects' as "group.key": a key twice in a line is a bug.
func JSONKeys(line []byte) ([]string, error) {
	dec := json.NewDecoder(bytes.NewReader(line))
	var keys []string
	var walk func(prefix string) error
	walk = func(prefix string) error {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		switch tok {
		case json.Delim('{'):
			for dec.More() {
				k, err := dec.Token()
				if err != nil {
					return err
				}
				keys = append(keys, prefix+k.(string))
				if err := walk(prefix + k.(string) + "."); err != nil {
					return err
				}
			}
			_, err = dec.Token() // }
			return err
		case json.Delim('['):
			for dec.More() {
				if err := walk(prefix); err != nil {
					return err
				}
			}
			_, err = dec.Token() // ]
			return err
		}
		return nil
	}
	return keys, walk("")
}

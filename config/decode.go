package config

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
)

// decode fills out from in (viper's merged settings, or one distro or
// repo of the file) and returns one error per problem, each naming its key
// (prefix, then the field) and the value it could not use.
func decode(in, out any, prefix string) []error {
	d, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{
		DecodeHook: mapstructure.ComposeDecodeHookFunc(
			strictNumbers,
			mapstructure.TextUnmarshallerHookFunc(),
			mapstructure.StringToSliceHookFunc(","),
		),
		// Environment variables and flags arrive as strings: "7" must
		// become an int and "false" a bool, as viper's own Unmarshal does.
		WeaklyTypedInput: true,
		ErrorUnused:      true,
		Result:           out,
	})
	if err != nil {
		return []error{err}
	}
	// mapstructure names the top of out by its type ("config.Config")
	// since v2.5.0, where v2.4.0 left the name empty: the top is prefix.
	top := reflect.TypeOf(out).Elem().String()
	return keyErrors(d.Decode(in), prefix, top)
}

// keyError is a problem with the value at a key.
type keyError struct{ key, problem string }

func (e *keyError) Error() string { return e.key + ": " + e.problem }

// keyErrors flattens mapstructure's tree of joined errors into one
// "key: problem" error each.
func keyErrors(err error, prefix, top string) []error {
	var out []error
	var walk func(error)
	walk = func(e error) {
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, x := range j.Unwrap() {
				walk(x)
			}
			return
		}
		if de, ok := e.(*mapstructure.DecodeError); ok {
			name := de.Name()
			if name == top {
				name = ""
			}
			key := joinKey(prefix, name)
			// ErrorUnused names the section; name each key in full,
			// "cache.max_sise". (mapstructure's Metadata would, but only
			// for a section with no other error.)
			if keys, ok := strings.CutPrefix(de.Unwrap().Error(), "has invalid keys: "); ok {
				for _, k := range strings.Split(keys, ", ") {
					out = append(out, &keyError{joinKey(key, k), unknownKey(joinKey(key, k))})
				}
				return
			}
			out = append(out, &keyError{orDefault(key, "config"), problem(de.Unwrap())})
			return
		}
		if w := errors.Unwrap(e); w != nil {
			walk(w) // mapstructure's "decoding failed due to ..." around the join
			return
		}
		if e != nil {
			out = append(out, &keyError{orDefault(prefix, "config"), e.Error()})
		}
	}
	walk(err)
	return out
}

// unknownKey is the problem with a key that is none: for the keys where
// an operator might write a secret, also where it goes instead.
func unknownKey(key string) string {
	switch key {
	case "storage.s3.access_key":
		return "unknown key: the config holds no key, only storage.s3.access_key_file, the file that holds it; or set " + EnvS3AccessKey
	case "storage.s3.secret_key":
		return "unknown key: the config holds no key, only storage.s3.secret_key_file, the file that holds it; or set " + EnvS3SecretKey
	}
	return "unknown key"
}

// problem says what is wrong with a value, showing the value: strconv's
// errors, as mapstructure wraps them, do not.
func problem(err error) string {
	var pe *mapstructure.ParseError
	var ue *mapstructure.UnconvertibleTypeError
	switch {
	case errors.As(err, &pe):
		return fmt.Sprintf("%s is not %s", showValue(pe.Value), kindName(pe.Expected.Type()))
	case errors.As(err, &ue):
		return fmt.Sprintf("%s is not %s", showValue(ue.Value), kindName(ue.Expected.Type()))
	}
	return err.Error()
}

func showValue(v any) string {
	if s, ok := v.(string); ok {
		return strconv.Quote(s)
	}
	return fmt.Sprint(v)
}

func kindName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Map, reflect.Struct:
		return "a mapping of keys"
	}
	return "a " + t.String()
}

func joinKey(prefix, key string) string {
	if prefix == "" || key == "" {
		return prefix + key
	}
	return prefix + "." + key
}

var durationType = reflect.TypeOf(time.Duration(0))

// strictNumbers turns what would silently become a wrong number into an
// error: a duration without a unit (pacoloco's `download_timeout: 3600`
// would otherwise be 3600ns) and a fraction where a whole number belongs.
func strictNumbers(from, to reflect.Type, data any) (any, error) {
	if to == durationType {
		switch v := data.(type) {
		case string:
			return parseDuration(v)
		case time.Duration:
			return v, nil
		}
		if n, ok := number(data); ok {
			if n == 0 {
				return time.Duration(0), nil
			}
			return nil, fmt.Errorf("%v has no unit: write %vs for seconds (units: ms, s, m, h, d)", data, data)
		}
		return nil, fmt.Errorf("%s is not a duration such as 30s, 5m, 1h or 7d", showValue(data))
	}
	if isInt(to.Kind()) && (from.Kind() == reflect.Float32 || from.Kind() == reflect.Float64) {
		if f, _ := number(data); f != math.Trunc(f) {
			return nil, fmt.Errorf("%v is not a whole number", data)
		}
	}
	return data, nil
}

func number(v any) (float64, bool) {
	rv := reflect.ValueOf(v)
	switch {
	case rv.CanInt():
		return float64(rv.Int()), true
	case rv.CanUint():
		return float64(rv.Uint()), true
	case rv.CanFloat():
		return rv.Float(), true
	}
	return 0, false
}

func isInt(k reflect.Kind) bool {
	return reflect.Int <= k && k <= reflect.Uint64
}

// parseDuration is time.ParseDuration plus whole days first ("7d",
// "1d12h"), the unit operators write for retention and grace periods. A
// bare number other than 0 is refused: "5" might mean seconds to one
// reader and nanoseconds to Go.
func parseDuration(s string) (time.Duration, error) {
	t := strings.TrimSpace(s)
	if f, err := strconv.ParseFloat(t, 64); err == nil && f != 0 {
		return 0, fmt.Errorf("%q has no unit: write %ss for seconds (units: ms, s, m, h, d)", s, t)
	}
	bad := fmt.Errorf("%q is not a duration such as 30s, 5m, 1h or 7d", s)
	var days time.Duration
	if n, rest, ok := strings.Cut(t, "d"); ok {
		d, err := strconv.ParseUint(n, 10, 16) // 65535 days fit in a Duration with room for the rest
		if err != nil || strings.HasPrefix(rest, "-") || strings.HasPrefix(rest, "+") {
			return 0, bad
		}
		days = time.Duration(d) * 24 * time.Hour
		if t = rest; t == "" {
			return days, nil
		}
	}
	d, err := time.ParseDuration(t)
	if err != nil || (days > 0 && d > math.MaxInt64-days) {
		return 0, bad
	}
	return days + d, nil
}

package transport

import (
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// A method's options are a struct whose exported fields carry tags
// `opt:"key"` or `opt:"key,secret"`; their wire form, which travels in
// ConnectRequest.options, is a map from key to text:
//
//	string    as is
//	bool      "true" or "false" (decoding also takes 1/0, yes/no, empty = false)
//	int       decimal (empty = 0)
//	[]string  the items joined by newlines (items may not contain one)
//
// Zero values are left out of the wire form. Secret options (passwords)
// are never printed by Redact.

type optField struct {
	key    string
	secret bool
	index  int
	kind   reflect.Kind
}

// optionFields returns the tagged fields of *struct v.
func optionFields(v any) ([]optField, error) {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.Elem().Kind() != reflect.Struct {
		return nil, fmt.Errorf("options must be a pointer to a struct, not %T", v)
	}
	t := rv.Elem().Type()
	var out []optField
	seen := map[string]bool{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag, ok := f.Tag.Lookup("opt")
		if !ok || tag == "-" {
			continue
		}
		key, flags, _ := strings.Cut(tag, ",")
		if key == "" || seen[key] || !f.IsExported() {
			return nil, fmt.Errorf("%s.%s: bad or duplicate opt tag %q", t, f.Name, tag)
		}
		seen[key] = true
		of := optField{key: key, secret: flags == "secret", index: i, kind: f.Type.Kind()}
		switch {
		case of.kind == reflect.String, of.kind == reflect.Bool, of.kind == reflect.Int:
		case of.kind == reflect.Slice && f.Type.Elem().Kind() == reflect.String:
		default:
			return nil, fmt.Errorf("%s.%s: options may be string, bool, int or []string, not %s", t, f.Name, f.Type)
		}
		out = append(out, of)
	}
	return out, nil
}

// validator is implemented by options that check themselves.
type validator interface{ Validate() error }

// DecodeOptions sets the tagged fields of dst (a pointer to an options
// struct) from wire, then calls dst.Validate when there is one. A key that
// names no field is an error that lists the known keys.
func DecodeOptions(wire map[string]string, dst any) error {
	fields, err := optionFields(dst)
	if err != nil {
		return err
	}
	byKey := map[string]optField{}
	for _, f := range fields {
		byKey[f.key] = f
	}
	rv := reflect.ValueOf(dst).Elem()
	keys := make([]string, 0, len(wire))
	for k := range wire {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := wire[k]
		f, ok := byKey[k]
		if !ok {
			var known []string
			for _, f := range fields {
				known = append(known, f.key)
			}
			return fmt.Errorf("unknown option %q (known: %s)", k, strings.Join(known, ", "))
		}
		fv := rv.Field(f.index)
		switch f.kind {
		case reflect.String:
			fv.SetString(v)
		case reflect.Bool:
			b := false
			switch strings.ToLower(v) {
			case "", "0", "false", "no":
			case "1", "true", "yes":
				b = true
			default:
				return fmt.Errorf("option %s: %q is not a boolean", k, v)
			}
			fv.SetBool(b)
		case reflect.Int:
			n := 0
			if v != "" {
				if n, err = strconv.Atoi(v); err != nil {
					return fmt.Errorf("option %s: %q is not a whole number", k, v)
				}
			}
			fv.SetInt(int64(n))
		case reflect.Slice:
			var items []string
			if v != "" {
				items = strings.Split(v, "\n")
			}
			fv.Set(reflect.ValueOf(items))
		}
	}
	if val, ok := dst.(validator); ok {
		if err := val.Validate(); err != nil {
			return err
		}
	}
	return nil
}

// EncodeOptions validates src (a pointer to an options struct; see
// DecodeOptions) and returns its wire form, zero values left out.
func EncodeOptions(src any) (map[string]string, error) {
	fields, err := optionFields(src)
	if err != nil {
		return nil, err
	}
	if val, ok := src.(validator); ok {
		if err := val.Validate(); err != nil {
			return nil, err
		}
	}
	rv := reflect.ValueOf(src).Elem()
	out := map[string]string{}
	for _, f := range fields {
		fv := rv.Field(f.index)
		switch f.kind {
		case reflect.String:
			if s := fv.String(); s != "" {
				out[f.key] = s
			}
		case reflect.Bool:
			if fv.Bool() {
				out[f.key] = "true"
			}
		case reflect.Int:
			if n := fv.Int(); n != 0 {
				out[f.key] = strconv.FormatInt(n, 10)
			}
		case reflect.Slice:
			items := fv.Interface().([]string)
			for _, it := range items {
				if strings.Contains(it, "\n") {
					return nil, fmt.Errorf("option %s: item %q contains a newline", f.key, it)
				}
			}
			if len(items) > 0 {
				out[f.key] = strings.Join(items, "\n")
			}
		}
	}
	return out, nil
}

// SecretKeys returns the keys of opts' (a pointer to an options struct)
// secret fields.
func SecretKeys(opts any) []string {
	fields, err := optionFields(opts)
	if err != nil {
		return nil
	}
	var out []string
	for _, f := range fields {
		if f.secret {
			out = append(out, f.key)
		}
	}
	return out
}

// Redact returns a copy of a kind's wire options with secret values
// replaced, for logs.
func (r *Registry) Redact(kind Kind, wire map[string]string) map[string]string {
	out := make(map[string]string, len(wire))
	var secret []string
	if zero, err := r.NewOptions(kind); err == nil && zero != nil {
		secret = SecretKeys(zero)
	}
	for k, v := range wire {
		if slices.Contains(secret, k) {
			v = "<secret>"
		}
		out[k] = v
	}
	return out
}

// OptionInfo describes one option of a method.
type OptionInfo struct {
	Key    string
	Type   string // string, bool, int or list
	Secret bool
}

// DescribeOptions lists the options of opts (a pointer to an options
// struct), in field order.
func DescribeOptions(opts any) []OptionInfo {
	fields, err := optionFields(opts)
	if err != nil {
		return nil
	}
	out := make([]OptionInfo, 0, len(fields))
	for _, f := range fields {
		typ := f.kind.String()
		if f.kind == reflect.Slice {
			typ = "list"
		}
		out = append(out, OptionInfo{Key: f.key, Type: typ, Secret: f.secret})
	}
	return out
}

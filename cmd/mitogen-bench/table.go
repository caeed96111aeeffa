package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// condition is one set of rows measured under one condition (e.g. a quiet
// machine, or two busy loops beside the run).
type condition struct {
	name string
	rows map[string]jsonRow
}

// mergeTables reads the JSON-line files of spec (NAME=FILE,...) and writes
// one Markdown table with, per row, a column group for each condition:
// mitogen-go's figure, its anchor's and the ratio. Markdown rows of the
// six-column form printRows writes (as other bench programs print them)
// are read too.
func mergeTables(w io.Writer, spec string) error {
	var conds []condition
	var order []string
	key := func(r jsonRow) string { return r.Name + "\x00" + r.AnchorName }
	info := map[string]jsonRow{}
	for _, part := range strings.Split(spec, ",") {
		name, file, ok := strings.Cut(part, "=")
		if !ok {
			return fmt.Errorf("-table: %q is not NAME=FILE", part)
		}
		f, err := os.Open(file)
		if err != nil {
			return fmt.Errorf("-table: %w", err)
		}
		c := condition{name: name, rows: map[string]jsonRow{}}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			var r jsonRow
			switch {
			case strings.HasPrefix(line, "{"):
				if err := json.Unmarshal([]byte(line), &r); err != nil {
					f.Close()
					return fmt.Errorf("-table: %s: %q: %w", file, line, err)
				}
			case strings.HasPrefix(line, "|"):
				if r, ok = parseMarkdownRow(line); !ok {
					continue // a header, a separator or a note
				}
			default:
				continue
			}
			k := key(r)
			if _, seen := info[k]; !seen {
				order = append(order, k)
				info[k] = r
			}
			c.rows[k] = r
		}
		f.Close()
		if err := sc.Err(); err != nil {
			return fmt.Errorf("-table: %s: %w", file, err)
		}
		conds = append(conds, c)
	}
	var b strings.Builder
	b.WriteString("| measure | anchor | goal |")
	sep := "|---|---|---|"
	for _, c := range conds {
		fmt.Fprintf(&b, " %s: mitogen-go | %s: anchor | %s: ratio |", c.name, c.name, c.name)
		sep += "---|---|---|"
	}
	b.WriteString("\n" + sep + "\n")
	for _, k := range order {
		r := info[k]
		fmt.Fprintf(&b, "| %s | %s | %s |", r.Name, r.AnchorName, r.Goal)
		for _, c := range conds {
			cr, ok := c.rows[k]
			if !ok {
				b.WriteString(" - | - | - |")
				continue
			}
			anchor, ratio := "-", "-"
			if cr.Anchor > 0 {
				anchor = fmt.Sprintf("%.4g %s", cr.Anchor, cr.Unit)
			}
			if cr.Ratio > 0 {
				ratio = fmt.Sprintf("%.3g×", cr.Ratio)
			}
			fmt.Fprintf(&b, " %.4g %s | %s | %s |", cr.Ours, cr.Unit, anchor, ratio)
		}
		b.WriteString("\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// parseMarkdownRow reads "| measure | 12.3 µs | anchor name | 45.6 µs |
// 0.27× | goal |".
func parseMarkdownRow(line string) (jsonRow, bool) {
	f := strings.Split(strings.Trim(line, "|"), "|")
	if len(f) != 6 {
		return jsonRow{}, false
	}
	for i := range f {
		f[i] = strings.TrimSpace(f[i])
	}
	ours, unit, ok := valueUnit(f[1])
	if !ok {
		return jsonRow{}, false
	}
	r := jsonRow{Name: f[0], Unit: unit, Ours: ours, AnchorName: f[2], Goal: f[5]}
	if a, _, ok := valueUnit(f[3]); ok {
		r.Anchor = a
	}
	if v, err := strconv.ParseFloat(strings.TrimSuffix(f[4], "×"), 64); err == nil {
		r.Ratio = v
	}
	return r, true
}

func valueUnit(s string) (float64, string, bool) {
	num, unit, _ := strings.Cut(s, " ")
	v, err := strconv.ParseFloat(num, 64)
	return v, unit, err == nil
}

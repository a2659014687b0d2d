package dataset

import (
	"bufio"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
)

// headerMode says whether the first CSV row names the columns.
type headerMode int

const (
	headerNo headerMode = iota
	headerYes
	headerAuto // a header if any field of the first row is not a number
)

// LoadCSV reads a CSV file of numeric features plus one integer label column
// into a Set. labelCol is the 0-based index of the label column, or -1 for
// the last column; header says whether the first row names the columns and
// is to be skipped. Labels must be non-negative integers; Classes is the
// largest label plus one. Errors wrap ErrBadCSV and name the file, line and
// column at fault.
func LoadCSV(path string, labelCol int, header bool) (*Set, error) {
	mode := headerNo
	if header {
		mode = headerYes
	}
	return loadCSV(path, labelCol, mode)
}

func loadCSV(path string, labelCol int, mode headerMode) (*Set, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("dataset: %w", err)
	}
	defer f.Close()
	cr := csv.NewReader(bufio.NewReader(f))
	cr.FieldsPerRecord = -1 // ragged rows are reported below, with both lengths
	cr.TrimLeadingSpace = true
	cr.ReuseRecord = true

	rec, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: %s is empty; want rows of numeric features and an integer label", ErrBadCSV, path)
	}
	if err != nil {
		return nil, csvReadErr(path, err)
	}
	cols := len(rec)
	if cols < 2 {
		line, _ := cr.FieldPos(0)
		return nil, fmt.Errorf("%w: %s:%d: %d column, want at least one feature column and a label column",
			ErrBadCSV, path, line, cols)
	}
	lc := labelCol
	if lc == -1 {
		lc = cols - 1
	}
	if lc < 0 || lc >= cols {
		return nil, fmt.Errorf("%w: %s: label column %d is out of range for %d columns; use 0..%d, or -1 for the last",
			ErrBadCSV, path, labelCol, cols, cols-1)
	}
	var names []string
	if mode == headerAuto {
		mode = headerNo
		for _, field := range rec {
			if _, err := strconv.ParseFloat(strings.TrimSpace(field), 64); err != nil {
				mode = headerYes
				break
			}
		}
	}
	if mode == headerYes {
		names = append([]string(nil), rec...)
	}

	s := &Set{Dim: cols - 1}
	firstLine, _ := cr.FieldPos(0)
	maxLabel := int32(-1)
	for {
		if mode == headerYes {
			mode = headerNo // skip the header row once
		} else {
			if len(rec) != cols {
				line, _ := cr.FieldPos(0)
				return nil, fmt.Errorf("%w: %s:%d: row has %d fields, want %d like line %d",
					ErrBadCSV, path, line, len(rec), cols, firstLine)
			}
			for j, field := range rec {
				field = strings.TrimSpace(field)
				if j == lc {
					v, err := strconv.ParseInt(field, 10, 32)
					if err != nil || v < 0 {
						return nil, csvFieldErr(cr, path, names, j, field, "a non-negative integer label")
					}
					s.Labels = append(s.Labels, int32(v))
					maxLabel = max(maxLabel, int32(v))
					continue
				}
				v, err := strconv.ParseFloat(field, 32)
				if err != nil || math.IsInf(v, 0) || math.IsNaN(v) {
					return nil, csvFieldErr(cr, path, names, j, field, "a finite number")
				}
				s.X = append(s.X, float32(v))
			}
			s.N++
		}
		rec, err = cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, csvReadErr(path, err)
		}
	}
	if s.N == 0 {
		return nil, fmt.Errorf("%w: %s has a header but no data rows", ErrBadCSV, path)
	}
	s.Classes = int(maxLabel) + 1
	return s, nil
}

// csvFieldErr names the file, line and column of a bad field.
func csvFieldErr(cr *csv.Reader, path string, names []string, col int, value, want string) error {
	line, _ := cr.FieldPos(col)
	name := ""
	if col < len(names) {
		name = fmt.Sprintf(" (%q)", names[col])
	}
	return fmt.Errorf("%w: %s:%d: column %d%s is %q, want %s", ErrBadCSV, path, line, col+1, name, value, want)
}

func csvReadErr(path string, err error) error {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return fmt.Errorf("%w: %s:%d:%d: %w", ErrBadCSV, path, pe.Line, pe.Column, pe.Err)
	}
	return fmt.Errorf("dataset: read %s: %w", path, err)
}

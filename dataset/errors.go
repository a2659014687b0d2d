package dataset

import "errors"

var (
	// ErrCorrupt reports a data file whose contents do not follow its format:
	// bad magic number, impossible dimensions, truncated or trailing bytes,
	// out-of-range labels.
	ErrCorrupt = errors.New("dataset: corrupt data file")

	// ErrNotFound reports that no data set could be located.
	ErrNotFound = errors.New("dataset: data not found")

	// ErrMismatch reports files that are well formed on their own but do not
	// belong together, such as an image file and a label file of different
	// lengths, or train and test sets with different feature counts.
	ErrMismatch = errors.New("dataset: files do not match")

	// ErrBadCSV reports a CSV file that cannot be read as numeric features
	// plus an integer label.
	ErrBadCSV = errors.New("dataset: bad CSV")

	// ErrBadSpec reports a --data value that names no known data source.
	ErrBadSpec = errors.New("dataset: bad --data value")
)

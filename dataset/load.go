package dataset

import (
	"fmt"
	"os"
	"strings"
)

// csvPrefix introduces a CSV --data value.
const csvPrefix = "csv:"

// Load turns a --data value into a training and a test set. It accepts:
//
//	mnist                  real MNIST, located by FindMNIST
//	DIR                    a directory holding the four MNIST IDX files
//	csv:TRAIN.csv,TEST.csv two CSV files, label in the last column, header
//	                       row detected by its first row not being numeric
//	sine:N                 a generated regression set: N points of sin on
//	                       [-π, π] and their N-1 midpoints as the test set
//	                       (Sine)
//
// "mnist" wins over a directory of that name; write ./mnist for the
// directory. For CSV both sets get the larger of their two class counts,
// and their feature counts must agree.
func Load(spec string) (train, test *Set, err error) {
	switch {
	case spec == "mnist":
		dir, err := FindMNIST()
		if err != nil {
			return nil, nil, err
		}
		return LoadMNIST(dir)
	case strings.HasPrefix(spec, csvPrefix):
		paths := strings.Split(strings.TrimPrefix(spec, csvPrefix), ",")
		if len(paths) != 2 || paths[0] == "" || paths[1] == "" {
			return nil, nil, fmt.Errorf("%w: --data=%q: want csv:TRAIN.csv,TEST.csv with two file names", ErrBadSpec, spec)
		}
		return loadCSVPair(paths[0], paths[1])
	case strings.HasPrefix(spec, sinePrefix):
		n, err := parseSine(spec)
		if err != nil {
			return nil, nil, err
		}
		train, test := Sine(n)
		return train, test, nil
	}
	if st, err := os.Stat(spec); err == nil && st.IsDir() {
		return LoadMNIST(spec)
	}
	return nil, nil, fmt.Errorf("%w: --data=%q is not an existing directory; want \"mnist\", a directory holding the MNIST IDX files, csv:TRAIN.csv,TEST.csv or sine:N",
		ErrBadSpec, spec)
}

func loadCSVPair(trainPath, testPath string) (train, test *Set, err error) {
	train, err = loadCSV(trainPath, -1, headerAuto)
	if err != nil {
		return nil, nil, err
	}
	test, err = loadCSV(testPath, -1, headerAuto)
	if err != nil {
		return nil, nil, err
	}
	if train.Dim != test.Dim {
		return nil, nil, fmt.Errorf("%w: %s has %d feature columns but %s has %d; both need the same columns",
			ErrMismatch, trainPath, train.Dim, testPath, test.Dim)
	}
	classes := max(train.Classes, test.Classes)
	train.Classes, test.Classes = classes, classes
	return train, test, nil
}

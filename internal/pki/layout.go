package pki

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Layout of a certificates directory (what `ringtrain certs` writes):
//
//	DIR/ca.pem                        the run's root certificate, the trust anchor
//	DIR/ca/root-key.pem               the root's key (0600): keep it offline
//	DIR/ca/intermediate.pem           the intermediate certificate
//	DIR/ca/intermediate-key.pem       the intermediate's key (0600): issues leaves
//	DIR/<role>/<id>/cert.pem          a leaf and the intermediate (its chain)
//	DIR/<role>/<id>/key.pem           the leaf's key (0600)
//	DIR/<role>/<id>/ca.pem            a copy of DIR/ca.pem
//
// Each DIR/<role>/<id> is complete on its own: mount it, and only it, where
// that identity runs (--tls-dir). The CA's keys never leave DIR/ca.
const (
	RootFile            = "ca.pem"
	RootKeyFile         = "ca/root-key.pem"
	IntermediateFile    = "ca/intermediate.pem"
	IntermediateKeyFile = "ca/intermediate-key.pem"
	CertFile            = "cert.pem"
	KeyFile             = "key.pem"
)

// LeafDir is the directory of id's files under a certificates directory.
func LeafDir(dir string, id Identity) string {
	return filepath.Join(dir, string(id.Role), id.ID)
}

// DirFiles are the files of one identity's directory (DIR/<role>/<id>).
func DirFiles(leafDir string) Files {
	return Files{Cert: filepath.Join(leafDir, CertFile), Key: filepath.Join(leafDir, KeyFile), CA: filepath.Join(leafDir, RootFile)}
}

// File is one file to write.
type File struct {
	Path string
	Data []byte
	Mode fs.FileMode
}

// CAFiles are the authority's files under dir (the root key only when a
// holds it).
func (a *Authority) CAFiles(dir string) []File {
	files := []File{
		{filepath.Join(dir, RootFile), a.RootPEM(), 0o644},
		{filepath.Join(dir, IntermediateFile), a.IntermediatePEM(), 0o644},
		{filepath.Join(dir, IntermediateKeyFile), a.IntermediateKeyPEM(), 0o600},
	}
	if k := a.RootKeyPEM(); k != nil {
		files = append(files, File{filepath.Join(dir, RootKeyFile), k, 0o600})
	}
	return files
}

// LeafFiles issues a key pair for each identity and returns its files under
// dir.
func (a *Authority) LeafFiles(dir string, ids []Identity, opt IssueOptions) ([]File, error) {
	var files []File
	for _, id := range ids {
		kp, err := a.Issue(id, opt)
		if err != nil {
			return nil, err
		}
		f := DirFiles(LeafDir(dir, id))
		files = append(files, File{f.Cert, kp.Cert, 0o644}, File{f.Key, kp.Key, 0o600}, File{f.CA, a.RootPEM(), 0o644})
	}
	return files, nil
}

// LoadAuthorityDir loads the authority of a certificates directory;
// fs.ErrNotExist (wrapped) when dir holds none.
func LoadAuthorityDir(dir string) (*Authority, error) {
	var b [3][]byte
	for i, name := range []string{RootFile, IntermediateFile, IntermediateKeyFile} {
		var err error
		if b[i], err = os.ReadFile(filepath.Join(dir, name)); err != nil {
			return nil, fmt.Errorf("pki: %w", err)
		}
	}
	return LoadAuthority(b[0], b[1], b[2])
}

// ExistsError names a file that WriteFiles would overwrite.
type ExistsError struct{ Path string }

func (e *ExistsError) Error() string { return fmt.Sprintf("pki: %s exists", e.Path) }

// WriteFiles writes files, each through a temporary file and a rename,
// creating directories as needed. Unless force is set it first checks that none exists,
// and writes nothing if one does (*ExistsError). Keys are written 0600.
func WriteFiles(files []File, force bool) error {
	if !force {
		for _, f := range files {
			if _, err := os.Lstat(f.Path); err == nil {
				return &ExistsError{f.Path}
			} else if !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("pki: %w", err)
			}
		}
	}
	for _, f := range files {
		if err := os.MkdirAll(filepath.Dir(f.Path), 0o755); err != nil {
			return fmt.Errorf("pki: %w", err)
		}
		if err := writeAtomic(f.Path, f.Data, f.Mode); err != nil {
			return err
		}
	}
	return nil
}

// writeAtomic writes through a temporary file and a rename, so that a
// Source never reads half a file.
func writeAtomic(path string, data []byte, mode fs.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("pki: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("pki: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("pki: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	return nil
}

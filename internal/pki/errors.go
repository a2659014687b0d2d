package pki

import "errors"

var (
	// ErrNoIdentity: a certificate names no ringtrain identity.
	ErrNoIdentity = errors.New("pki: certificate has no ringtrain identity")
	// ErrNoPeerCertificate: a connection carries no verified client certificate.
	ErrNoPeerCertificate = errors.New("pki: peer presented no certificate")
)

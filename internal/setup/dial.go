package setup

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/crypto/ssh/knownhosts"
)

// HostKeyError is a host key that the known_hosts file does not vouch for.
// It is returned before any credential or file was sent.
type HostKeyError struct {
	Addr        string // host:port as dialed
	Type        string // the key's type, such as ssh-ed25519
	Fingerprint string // the key's SHA256 fingerprint, as ssh-keygen -l prints it
	File        string // the known_hosts file consulted
	// Changed is true when File holds another key for the host (the host
	// was reinstalled, or someone is in between); false when it holds
	// none.
	Changed bool
	// At is file:line of a known key, when Changed.
	At string
}

func (e *HostKeyError) Error() string {
	host, port, _ := net.SplitHostPort(e.Addr)
	scan := "ssh-keyscan "
	switch {
	case e.Type == ssh.KeyAlgoED25519, e.Type == ssh.KeyAlgoRSA:
		scan += "-t " + strings.TrimPrefix(e.Type, "ssh-") + " "
	case strings.HasPrefix(e.Type, "ecdsa-"):
		scan += "-t ecdsa "
	}
	entry := host
	if port != "22" {
		scan += "-p " + port + " "
		entry = "[" + host + "]:" + port
	}
	scan += host + " >> " + e.File
	if e.Changed {
		return fmt.Sprintf("host key of %s has CHANGED: the host presents %s %s, but %s holds another key for it; "+
			"someone may be in between, or the host was reinstalled; nothing was sent. "+
			"If you know the host was reinstalled, check the new key's fingerprint on its console "+
			"(ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub), remove the old key with ssh-keygen -R '%s' -f %s, "+
			"and add the new one (%s)", e.Addr, e.Type, e.Fingerprint, e.At, entry, e.File, scan)
	}
	return fmt.Sprintf("host key of %s is unknown: the host presents %s %s, which %s does not hold; nothing was sent. "+
		"Check the fingerprint on the host's console (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub), then accept it "+
		"with %s, or by logging in once with ssh", e.Addr, e.Type, e.Fingerprint, e.File, scan)
}

// hostKeys returns the callback that checks a host key against file, and
// the key algorithms to ask the host for: those of the keys file holds for
// addr, so that a host with several keys presents the known one (else the
// negotiated key could be another of its keys and look changed). A missing
// file knows no host.
func hostKeys(file, addr string) (ssh.HostKeyCallback, []string, error) {
	check, err := knownhosts.New(file)
	if errors.Is(err, fs.ErrNotExist) {
		check = func(string, net.Addr, ssh.PublicKey) error { return &knownhosts.KeyError{} }
	} else if err != nil {
		return nil, nil, fmt.Errorf("known hosts file: %w", err)
	}
	cb := func(host string, remote net.Addr, key ssh.PublicKey) error {
		err := check(host, remote, key)
		var ke *knownhosts.KeyError
		if !errors.As(err, &ke) {
			return err // nil, or a *knownhosts.RevokedError that names the key
		}
		e := &HostKeyError{Addr: addr, Type: key.Type(), Fingerprint: ssh.FingerprintSHA256(key), File: file, Changed: len(ke.Want) > 0}
		if e.Changed {
			e.At = ke.Want[0].Filename + ":" + strconv.Itoa(ke.Want[0].Line)
		}
		return e
	}

	// Ask the callback about a throwaway key: its KeyError lists the keys
	// on file for addr.
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("host key algorithms: %w", err)
	}
	probe, err := ssh.NewPublicKey(pub)
	if err != nil {
		return nil, nil, fmt.Errorf("host key algorithms: %w", err)
	}
	remote := &net.TCPAddr{IP: net.IPv4zero}
	if host, port, err := net.SplitHostPort(addr); err == nil {
		if ip := net.ParseIP(host); ip != nil {
			remote.IP = ip
		}
		remote.Port, _ = strconv.Atoi(port)
	}
	var algos []string
	var ke *knownhosts.KeyError
	if errors.As(check(addr, remote, probe), &ke) {
		for _, k := range ke.Want {
			t := k.Key.Type()
			if t == ssh.KeyAlgoRSA {
				algos = append(algos, ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256)
			}
			algos = append(algos, t)
		}
	}
	return cb, algos, nil
}

// auth returns the ways to log in: the key in keyFile (if set), then the
// keys of the SSH agent at agentSock (if set and reachable). The returned
// function closes the agent connection.
func auth(keyFile, agentSock string) ([]ssh.AuthMethod, func(), error) {
	var methods []ssh.AuthMethod
	closeAgent := func() {}
	if keyFile != "" {
		pem, err := os.ReadFile(keyFile)
		if err != nil {
			return nil, nil, fmt.Errorf("key file: %w", err)
		}
		signer, err := ssh.ParsePrivateKey(pem)
		var missing *ssh.PassphraseMissingError
		switch {
		case errors.As(err, &missing):
			return nil, nil, fmt.Errorf("key file %s is encrypted with a passphrase, which setup does not ask for: "+
				"load it into your SSH agent (ssh-add %s) and leave out -i", keyFile, keyFile)
		case err != nil:
			return nil, nil, fmt.Errorf("key file %s: %w", keyFile, err)
		}
		methods = append(methods, ssh.PublicKeys(signer))
	}
	if agentSock != "" {
		conn, err := net.Dial("unix", agentSock)
		if err != nil {
			if len(methods) == 0 {
				return nil, nil, fmt.Errorf("SSH agent at %s (SSH_AUTH_SOCK): %w; start one and ssh-add your key, or give a key file with -i", agentSock, err)
			}
		} else {
			methods = append(methods, ssh.PublicKeysCallback(agent.NewClient(conn).Signers))
			closeAgent = func() { conn.Close() }
		}
	}
	if len(methods) == 0 {
		return nil, nil, errors.New("no SSH key: SSH_AUTH_SOCK names no SSH agent and no key file was given (-i FILE)")
	}
	return methods, closeAgent, nil
}

// dial connects and logs in to t, checking its host key first.
func dial(ctx context.Context, t Target, o *Options) (*ssh.Client, error) {
	addr := t.Addr()
	check, algos, err := hostKeys(o.KnownHosts, addr)
	if err != nil {
		return nil, err
	}
	methods, closeAgent, err := auth(o.KeyFile, o.AgentSocket)
	if err != nil {
		return nil, err
	}
	defer closeAgent() // the agent signs during the handshake only

	dialer := o.Dial
	if dialer == nil {
		dialer = (&net.Dialer{}).DialContext
	}
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := dialer(dctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", addr, err)
	}
	// The handshake has no context of its own: a deadline bounds it, and
	// cancelling ctx closes the connection.
	deadline, _ := dctx.Deadline()
	conn.SetDeadline(deadline)
	stop := context.AfterFunc(dctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	cc, chans, reqs, err := ssh.NewClientConn(conn, addr, &ssh.ClientConfig{
		User:              t.User,
		Auth:              methods,
		HostKeyCallback:   check,
		HostKeyAlgorithms: algos,
	})
	stop()
	if err != nil {
		conn.Close()
		var hk *HostKeyError
		if errors.As(err, &hk) {
			return nil, hk
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("log in to %s: %w", addr, context.Cause(ctx))
		}
		return nil, fmt.Errorf("log in to %s as %s: %w", addr, t.User, err)
	}
	conn.SetDeadline(time.Time{})
	return ssh.NewClient(cc, chans, reqs), nil
}

// Package pki owns the fleet's trust: the server's small certificate
// authority, the one-time join tokens that let a host into the fleet, and
// the mutual TLS that every later exchange between the server and a node
// (an agent, issue 12; a balancer node, issue 13) runs on.
//
// The CA (LoadOrCreateCA) is an ECDSA P-256 key and a self-signed
// certificate in a directory of the server, created at its first start and
// only ever loaded after that: a damaged, mismatched or loosely permissioned
// file is refused by name, never replaced. Its pin ("sha256:<hex>" of the
// certificate's SubjectPublicKeyInfo) travels inside every join token, so a
// joining host can tell the real server from an impostor before it has
// anything else to trust.
//
// Joining (Server, Join). The operator makes a token (NewJoinToken): its
// record, which holds only a hash of the secret, goes into a TokenStore; the
// token string goes to the host. The host makes its key (which never leaves
// it) and a signing request, and sends them with the token to POST /v1/join
// on the server's fleet port, checking that the server's certificate comes
// from the pinned CA. The server consumes the token (once, atomically),
// records the node (Nodes) and answers with a certificate naming the node
// and its role. From then on the node authenticates with that certificate;
// a Renewer renews it at two thirds of its lifetime (POST /v1/renew) and
// swaps it into the node's TLS configurations without dropping connections.
//
// Every endpoint of the fleet other than /v1/join sits behind
// Server.RequireNode: 401 without a verified client certificate, 403 for a
// node that was removed or has the wrong role.
//
// Files (mode, content):
//
//	<ca dir>/ca.key      0600  PKCS#8 PEM, ECDSA P-256: the CA's key
//	<ca dir>/ca.crt      0644  PEM: the CA's certificate, 10 years
//	<node dir>/node.key  0600  PKCS#8 PEM, ECDSA P-256: the node's key
//	<node dir>/node.crt  0644  PEM: the node's certificate (DefaultNodeTTL)
//	<node dir>/ca.crt    0644  PEM: the fleet CA's certificate
//
// Both directories are 0700. Every file is written atomically
// (internal/atomicfile).
package pki

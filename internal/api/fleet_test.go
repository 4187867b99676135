package api

import (
	"encoding/json"
	"testing"
)

// TestFleetWireUnchanged holds the join protocol's bodies to their bytes:
// agents and servers of different versions must keep understanding each
// other.
func TestFleetWireUnchanged(t *testing.T) {
	cases := []struct {
		v    any
		want string
	}{
		{JoinRequest{Token: "tok", Name: "web-1", CSR: "csr"}, `{"token":"tok","name":"web-1","csr":"csr"}`},
		{RenewRequest{CSR: "csr"}, `{"csr":"csr"}`},
		{NodeCertificate{Certificate: "cert", CA: "ca"}, `{"certificate":"cert","ca":"ca"}`},
	}
	for _, tc := range cases {
		got, err := json.Marshal(tc.v)
		if err != nil || string(got) != tc.want {
			t.Errorf("%T = %s, %v; want %s", tc.v, got, err, tc.want)
		}
	}
}

func TestNodeRoleValid(t *testing.T) {
	for role, want := range map[NodeRole]bool{RoleAgent: true, RoleLB: true, RoleServer: false, "": false, "Agent": false} {
		if role.Valid() != want {
			t.Errorf("%q.Valid() = %v, want %v", role, !want, want)
		}
	}
}

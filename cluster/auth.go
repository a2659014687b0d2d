package cluster

import (
	"context"
	"errors"
	"fmt"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Access control in etcd. With client-certificate authentication
// (--client-cert-auth) and auth enabled, etcd takes a client's user name from
// the common name of its verified certificate, which the run's CA spells
// "<role>:<id>" (package pki). So a process's certificate for the ring is
// also its etcd identity, and no password exists anywhere:
//
//	user               roles                          may
//	root               root                           (no certificate names it: CNs hold a ':')
//	coordinator:<id>   root                           everything: provision users as workers enrol,
//	                                                  write the spec, generation, pointer, done
//	worker:<id>        ringtrain:<run>:worker:<id>    read the run; write only WorkerKeys(id)
//	client:<name>      ringtrain:<run>:reader         read the run (ringtrain status, tools)
//
// Coordinators hold etcd's root role because only root may add users and
// roles in etcd, and the coordinator is where a worker's certificate is
// issued (it holds the run's intermediate key, with which it could mint any
// identity anyway): it provisions the worker's user when it issues the
// certificate (EnsureWorkerUser), before the worker can reach etcd. Tools
// that issue certificates up front (`ringtrain local`, tests) provision at
// issue time too. A worker's role grants each of its keys exactly (not a
// prefix), so worker "w1" cannot write "w10"'s keys, nor any key a
// coordinator writes. Roles are per run; users are per etcd, so runs that
// share an etcd share their coordinators.

// Who turns auth on. `ringtrain local` and tests provision at issue time
// (above). Elsewhere (compose, Kubernetes) a coordinator that holds the
// run's intermediate CA (--ca-dir) provisions etcd itself at every start,
// before anything else (Bootstrap): its ID may be new (a pod name), and once
// auth is on only a root-role user may add it, so it mints from the
// intermediate a short-lived certificate of AdminCoordinator, whose user
// Bootstrap creates (with root) before it enables auth, and provisions
// through it. A worker's user is added by the coordinator that enrolls it,
// before the certificate is returned.

// AdminCoordinator is the coordinator ID of the certificate through which a
// coordinator holding the intermediate CA provisions etcd (Bootstrap). The
// intermediate could mint any identity, and every coordinator user holds
// root, so the name grants nothing a coordinator's own does not.
const AdminCoordinator = "etcd-admin"

// RootUser is etcd's administrator; enabling auth requires it.
const RootUser = "root"

// rootRole is etcd's built-in all-powerful role.
const rootRole = "root"

// CoordinatorUser is the etcd user of coordinator id: its certificate's CN.
func CoordinatorUser(id string) string { return "coordinator:" + id }

// WorkerUser is the etcd user of worker id: its certificate's CN.
func WorkerUser(id string) string { return "worker:" + id }

// ClientUser is the etcd user of a tool's client certificate.
func ClientUser(name string) string { return "client:" + name }

// WorkerRole is the role of worker id in run.
func WorkerRole(run, id string) string { return "ringtrain:" + run + ":worker:" + id }

// ReaderRole is the read-only role of run.
func ReaderRole(run string) string { return "ringtrain:" + run + ":reader" }

// EnableAuth turns on etcd's authentication, creating the root user
// (without a password: no certificate of the run's CA names it) first. It is
// idempotent. Provision the coordinators (EnsureCoordinatorUser) before: once
// auth is on, only root-role users may administer.
func EnableAuth(ctx context.Context, cli *clientv3.Client) error {
	if err := ensureUser(ctx, cli, RootUser, rootRole); err != nil {
		return err
	}
	if _, err := cli.AuthEnable(ctx); err != nil {
		return fmt.Errorf("cluster: enable etcd auth: %w", err)
	}
	return nil
}

// Bootstrap provisions etcd for run and turns auth on: AdminCoordinator's
// user and each of coordinators get the root role, each of clients a
// reader's (EnsureClientUser), then EnableAuth. admin must authenticate as a
// root-role user — AdminCoordinator's certificate, which is one once
// Bootstrap ran — or anyone, before auth is on. Idempotent, and safe while
// other coordinators do the same. The etcd must run with
// --client-cert-auth: its users have no passwords.
func Bootstrap(ctx context.Context, admin *clientv3.Client, run string, coordinators, clients []string) error {
	for _, id := range append([]string{AdminCoordinator}, coordinators...) {
		if err := EnsureCoordinatorUser(ctx, admin, id); err != nil {
			return err
		}
	}
	for _, name := range clients {
		if err := EnsureClientUser(ctx, admin, run, name); err != nil {
			return err
		}
	}
	return EnableAuth(ctx, admin)
}

// EnsureCoordinatorUser gives coordinator id's certificate etcd's root role
// (see the table above). Idempotent.
func EnsureCoordinatorUser(ctx context.Context, cli *clientv3.Client, id string) error {
	return ensureUser(ctx, cli, CoordinatorUser(id), rootRole)
}

// EnsureWorkerUser lets worker id's certificate read run and write its own
// keys (WorkerKeys) and nothing else. Idempotent; cli must hold the root
// role (a coordinator's, or before auth is enabled).
func EnsureWorkerUser(ctx context.Context, cli *clientv3.Client, run, id string) error {
	role := WorkerRole(run, id)
	if err := ensureRole(ctx, cli, role, run); err != nil {
		return err
	}
	for _, k := range WorkerKeys(id) {
		if _, err := cli.RoleGrantPermission(ctx, role, Key(run, k), "", clientv3.PermissionType(clientv3.PermReadWrite)); err != nil {
			return fmt.Errorf("cluster: grant %s write on %s: %w", role, k, err)
		}
	}
	return ensureUser(ctx, cli, WorkerUser(id), role)
}

// RemoveWorkerUser deletes worker id's user and role in run (a worker
// retired for good); a later EnsureWorkerUser lets it in again.
func RemoveWorkerUser(ctx context.Context, cli *clientv3.Client, run, id string) error {
	if _, err := cli.UserDelete(ctx, WorkerUser(id)); err != nil && !errors.Is(err, rpctypes.ErrUserNotFound) {
		return fmt.Errorf("cluster: delete etcd user %s: %w", WorkerUser(id), err)
	}
	if _, err := cli.RoleDelete(ctx, WorkerRole(run, id)); err != nil && !errors.Is(err, rpctypes.ErrRoleNotFound) {
		return fmt.Errorf("cluster: delete etcd role %s: %w", WorkerRole(run, id), err)
	}
	return nil
}

// EnsureClientUser lets a tool's certificate (client:<name>) read run.
func EnsureClientUser(ctx context.Context, cli *clientv3.Client, run, name string) error {
	role := ReaderRole(run)
	if err := ensureRole(ctx, cli, role, run); err != nil {
		return err
	}
	return ensureUser(ctx, cli, ClientUser(name), role)
}

// ensureRole creates role with read access to run's keys.
func ensureRole(ctx context.Context, cli *clientv3.Client, role, run string) error {
	if _, err := cli.RoleAdd(ctx, role); err != nil && !errors.Is(err, rpctypes.ErrRoleAlreadyExist) {
		return fmt.Errorf("cluster: add etcd role %s: %w", role, err)
	}
	pfx := Prefix(run)
	if _, err := cli.RoleGrantPermission(ctx, role, pfx, clientv3.GetPrefixRangeEnd(pfx), clientv3.PermissionType(clientv3.PermRead)); err != nil {
		return fmt.Errorf("cluster: grant %s read on %s: %w", role, pfx, err)
	}
	return nil
}

// ensureUser creates a user without a password (it authenticates by its
// certificate's CN) and grants it role.
func ensureUser(ctx context.Context, cli *clientv3.Client, user, role string) error {
	if _, err := cli.UserAddWithOptions(ctx, user, "", &clientv3.UserAddOptions{NoPassword: true}); err != nil && !errors.Is(err, rpctypes.ErrUserAlreadyExist) {
		return fmt.Errorf("cluster: add etcd user %s: %w", user, err)
	}
	if _, err := cli.UserGrantRole(ctx, user, role); err != nil {
		return fmt.Errorf("cluster: grant etcd user %s role %s: %w", user, role, err)
	}
	return nil
}

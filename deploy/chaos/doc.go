// Package chaos is `ringtrain chaos`: fault scenarios against the
// docker-compose cluster.
//
// Each scenario brings up its own compose project (docker-compose.yml plus
// deploy/chaos/compose.yml, a unique -p name, so its own network and
// volumes), follows the run in etcd (whose client port the override
// publishes on 127.0.0.1; mutual TLS with a reader's certificate from the
// project's certs volume: etcdtls.go) until it reaches the strike step, strikes (kill -9
// a worker, kill the leader coordinator, docker pause, network disconnect,
// etcd restart, a corrupt checkpoint, scaling), waits for the run to finish
// and checks: the run finished every step, it ended with the parameters of
// the undisturbed reference (training is exact, so its final params_sha256
// must equal that of one `ringtrain train` process of the same spec and seed
// in the same image, trained once per invocation: reference.go), the
// workers' step log has no gap and no repeat, and the replicas stayed
// identical (same loss at every step of a generation on every rank, and the
// coordinators' --hash-every never tripped), and etcd refuses plaintext,
// certificate-less clients and a worker's certificate writing the
// generation. The project is removed with its
// volumes afterwards, whatever happened, Ctrl-C included.
package chaos

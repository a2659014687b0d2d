package chaos

import "context"

// chaosScenario is one named fault. strike runs once the ring has reached
// the strike step, and waits for the cluster's first reaction to the fault;
// after the run is done, the common checks run, then check (if any).
type chaosScenario struct {
	name   string
	about  string
	strike func(ctx context.Context, r *chaosRun) error
	check  func(ctx context.Context, r *chaosRun, a *chaosStepReport) error
}

var chaosScenarios = []chaosScenario{
	{name: "kill-worker", about: "docker kill -s KILL one worker: the survivors form the next generation and go on", strike: strikeKillWorker},
	{name: "kill-leader", about: "docker kill -s KILL the leading coordinator: the standby takes over", strike: strikeKillLeader},
	{name: "pause-worker", about: "docker pause one worker past the failure timeout, then unpause: the ring drops it, then takes it back", strike: strikePauseWorker},
	{name: "disconnect-worker", about: "docker network disconnect one worker, then reconnect it: the ring drops it, then takes it back", strike: strikeDisconnectWorker},
	{name: "restart-etcd", about: "docker restart etcd: training goes on", strike: strikeRestartEtcd},
	{name: "corrupt-checkpoint", about: "kill every worker and coordinator, flip bytes in the newest checkpoint, start them: the run resumes from the previous one", strike: strikeCorruptCheckpoint, check: checkCorruptCheckpoint},
	{name: "scale-up", about: "compose up --scale worker=5: the ring grows to five at a step boundary", strike: strikeScale(5)},
	{name: "scale-down", about: "compose up --scale worker=2: the ring shrinks to two", strike: strikeScale(2)},
}

func chaosScenarioNames() []string {
	names := make([]string, len(chaosScenarios))
	for i, s := range chaosScenarios {
		names[i] = s.name
	}
	return names
}

func findChaosScenario(name string) (chaosScenario, bool) {
	for _, s := range chaosScenarios {
		if s.name == name {
			return s, true
		}
	}
	return chaosScenario{}, false
}

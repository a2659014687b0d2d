package worker

import (
	"context"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/ringtrain/ringtrain/cluster"
)

// publisher writes progress to etcd off the training path: it keeps only the
// newest value, so a slow or unreachable etcd never stalls a step.
type publisher struct {
	run  *cluster.Client
	who  string // this worker's ID: it writes progress/<who>
	log  *zap.Logger
	in   chan cluster.Progress // size 1: the newest value replaces a pending one
	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

func newPublisher(run *cluster.Client, who string, log *zap.Logger) *publisher {
	p := &publisher{run: run, who: who, log: log, in: make(chan cluster.Progress, 1), stop: make(chan struct{})}
	p.wg.Add(1)
	go p.loop()
	return p
}

// Publish queues v, replacing any value not yet written.
func (p *publisher) Publish(v cluster.Progress) {
	for {
		select {
		case p.in <- v:
			return
		default:
		}
		select {
		case <-p.in:
		default:
		}
	}
}

func (p *publisher) loop() {
	defer p.wg.Done()
	for {
		select {
		case <-p.stop:
			// Write what is pending, then stop.
			select {
			case v := <-p.in:
				p.write(v)
			default:
			}
			return
		case v := <-p.in:
			p.write(v)
		}
	}
}

func (p *publisher) write(v cluster.Progress) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := p.run.PublishProgress(ctx, p.who, v); err != nil {
		p.log.Debug("publish progress", zap.Error(err))
	}
}

// Close writes the pending value and stops; idempotent.
func (p *publisher) Close() {
	p.once.Do(func() { close(p.stop) })
	p.wg.Wait()
}

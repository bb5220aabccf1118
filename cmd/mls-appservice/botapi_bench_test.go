package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mls-appservice/mls-appservice/botapi/client"
)

// BenchmarkBotAPIDelivery measures messages per second from a send
// request to their delivery on another puppet's event stream, through
// the real service and Synapse, and the latency of each (p50, p99), with
// 1 and with 100 event streams open at once:
//
//	./scripts/with-env go test -run '^$' -bench BotAPIDelivery -benchtime 200x ./cmd/mls-appservice/
func BenchmarkBotAPIDelivery(b *testing.B) {
	opts := botAPIOptions(b, "mlsbench")
	opts.extra["botapi"]["max_streams"] = 200
	opts.extra["logging"] = map[string]any{"level": "info"}
	_, svcs := startServices(b, opts)
	S := svcs[0]
	ctx := context.Background()
	base := botAPIBase(b, S.cfgPath)
	c := client.New(base, addBot(b, S.cfgPath, "bench"))
	sender, err := c.CreatePuppet(ctx, client.CreatePuppet{Name: "sender"})
	if err != nil {
		b.Fatal(err)
	}
	receiver, err := c.CreatePuppet(ctx, client.CreatePuppet{Name: "receiver"})
	if err != nil {
		b.Fatal(err)
	}
	room, err := c.CreateRoom(ctx, sender.UserID, client.CreateRoom{Invite: []string{receiver.UserID}})
	if err != nil {
		b.Fatal(err)
	}
	waitConverged(b, c, sender.UserID, room, 2)
	sendRetry(b, c, sender.UserID, room, "warm-up", "")
	run := 0
	for _, streams := range []int{1, 100} {
		b.Run(fmt.Sprintf("streams=%d", streams), func(b *testing.B) {
			run++
			prefix := fmt.Sprintf("run%d-", run)
			n := b.N
			var mu sync.Mutex
			sentAt := make([]time.Time, n)
			var lat []time.Duration
			var wg sync.WaitGroup
			got := make([]int, streams)
			var opened []*client.Stream
			for k := range streams {
				st, err := c.Events(ctx, "", receiver.UserID)
				if err != nil {
					b.Fatal(err)
				}
				opened = append(opened, st)
				wg.Add(1)
				go func() {
					defer wg.Done()
					for got[k] < n {
						ev, err := st.Next()
						if err != nil {
							return
						}
						now := time.Now()
						var m struct {
							Body string `json:"body"`
						}
						_ = json.Unmarshal(ev.Content, &m)
						var i int
						if _, err := fmt.Sscanf(m.Body, prefix+"%d", &i); err != nil || ev.Kind != "message" || i >= n {
							continue
						}
						mu.Lock()
						lat = append(lat, now.Sub(sentAt[i]))
						mu.Unlock()
						got[k]++
					}
				}()
			}
			b.ResetTimer()
			start := time.Now()
			var sends sync.WaitGroup
			const senders = 4
			for w := range senders {
				sends.Add(1)
				go func() {
					defer sends.Done()
					for i := w; i < n; i += senders {
						mu.Lock()
						sentAt[i] = time.Now()
						mu.Unlock()
						sendRetry(b, c, sender.UserID, room, fmt.Sprintf("%s%d", prefix, i), "")
					}
				}()
			}
			sends.Wait()
			done := make(chan struct{})
			go func() { wg.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(5 * time.Minute):
				b.Fatalf("not every stream got every message: %v of %d", got, n)
			}
			elapsed := time.Since(start)
			b.StopTimer()
			for _, st := range opened {
				st.Close()
			}
			slices.Sort(lat)
			p := func(q float64) float64 { return float64(lat[int(q*float64(len(lat)-1))].Microseconds()) / 1000 }
			b.ReportMetric(float64(n)/elapsed.Seconds(), "msgs/s")
			b.ReportMetric(p(0.5), "p50_ms")
			b.ReportMetric(p(0.99), "p99_ms")
			fmt.Printf("botapi-bench: streams=%d messages=%d msgs_per_s=%.1f p50_ms=%.1f p99_ms=%.1f\n",
				streams, n, float64(n)/elapsed.Seconds(), p(0.5), p(0.99))
		})
	}
}

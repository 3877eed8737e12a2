// go-micro's side of tsmicro's benchmark (npm run bench): the same echo as every RPC row, over
// go-micro's defaults (its http transport, mucp), and its default http broker's pub/sub, each
// role in its own process like every other row. BENCH_ROLE picks the role, BENCH_PEER carries what
// the peer process printed (its registry records, its credit port). Each process has its own
// memory registry holding the peer's records, as tsmicro's rows do, so no discovery traffic is
// measured and nothing multicasts.
//
// The harness's worker drives it over stdin ("load <n>", "mark") and reads JSON lines from stdout:
// {"ready": info} once started, {"mark": {...}} per mark. EOF on stdin ends the process.
package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"

	micro "go-micro.dev/v5"
	"go-micro.dev/v5/broker"
	"go-micro.dev/v5/client"
	"go-micro.dev/v5/registry"
	"golang.org/x/sys/unix"
)

const (
	service     = "bench.greeter"
	eventBytes  = 200
	window      = 1024 // events in flight between publisher and subscriber (bench/pubsub.ts)
	creditBatch = 64
)

type HelloRequest struct {
	Name string `json:"name"`
}

type HelloResponse struct {
	Msg string `json:"msg"`
}

type Greeter struct{}

func (g *Greeter) Hello(ctx context.Context, req *HelloRequest, rsp *HelloResponse) error {
	rsp.Msg = "Hello " + req.Name
	return nil
}

func emit(v any) {
	line, _ := json.Marshal(v)
	os.Stdout.Write(append(line, '\n'))
}

func fail(format string, args ...any) {
	emit(map[string]string{"fatal": fmt.Sprintf(format, args...)})
	os.Exit(1)
}

// nowMs is CLOCK_MONOTONIC in milliseconds, the clock the Node workers stamp events with.
func nowMs() float64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return float64(ts.Sec)*1e3 + float64(ts.Nsec)/1e6
}

// recorder keeps the latencies (ms) of one measuring window.
type recorder struct {
	mu      sync.Mutex
	samples []float64
}

func (r *recorder) record(ms float64) {
	r.mu.Lock()
	r.samples = append(r.samples, ms)
	r.mu.Unlock()
}

func (r *recorder) take() map[string]any {
	r.mu.Lock()
	s := r.samples
	r.samples = make([]float64, 0, len(s))
	r.mu.Unlock()
	sort.Float64s(s)
	at := func(q float64) float64 {
		if len(s) == 0 {
			return 0
		}
		return s[int(math.Min(float64(len(s)-1), math.Floor(q*float64(len(s)))))]
	}
	return map[string]any{"count": len(s), "p50": at(0.5), "p99": at(0.99)}
}

func mark(r *recorder) {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	cpu := ru.Utime.Sec*1e6 + ru.Utime.Usec + ru.Stime.Sec*1e6 + ru.Stime.Usec
	rss := 0
	if statm, err := os.ReadFile("/proc/self/statm"); err == nil {
		if f := strings.Fields(string(statm)); len(f) > 1 {
			pages, _ := strconv.Atoi(f[1])
			rss = pages * os.Getpagesize()
		}
	}
	emit(map[string]any{"mark": map[string]any{"cpuMicros": cpu, "rss": rss, "stats": r.take()}})
}

func peerRecords(reg registry.Registry, peer []*registry.Service) {
	for _, s := range peer {
		if err := reg.Register(s); err != nil {
			fail("register the peer's record: %v", err)
		}
	}
}

func main() {
	var peer struct {
		Records    []*registry.Service `json:"records"`
		CreditPort int                 `json:"creditPort"`
	}
	if p := os.Getenv("BENCH_PEER"); p != "" && p != "null" {
		if err := json.Unmarshal([]byte(p), &peer); err != nil {
			fail("BENCH_PEER: %v", err)
		}
	}
	reg := registry.NewMemoryRegistry()
	rec := &recorder{}
	var load func(n int)

	switch os.Getenv("BENCH_ROLE") {
	case "server":
		s := micro.NewService(micro.Name(service), micro.Registry(reg), micro.Address("127.0.0.1:0"), micro.HandleSignal(false))
		if err := micro.RegisterHandler(s.Server(), new(Greeter)); err != nil {
			fail("handler: %v", err)
		}
		if err := s.Server().Start(); err != nil {
			fail("server start: %v", err)
		}
		records, err := reg.GetService(service)
		if err != nil {
			fail("own record: %v", err)
		}
		emit(map[string]any{"ready": map[string]any{"records": records}})

	case "client":
		peerRecords(reg, peer.Records)
		c := micro.NewService(micro.Registry(reg), micro.HandleSignal(false)).Client()
		call := func() error {
			req := c.NewRequest(service, "Greeter.Hello", &HelloRequest{Name: "davie"}, client.WithContentType("application/json"))
			var rsp HelloResponse
			if err := c.Call(context.Background(), req, &rsp); err != nil {
				return err
			}
			if rsp.Msg != "Hello davie" {
				return fmt.Errorf("unexpected answer %q", rsp.Msg)
			}
			return nil
		}
		if err := call(); err != nil {
			fail("first call: %v", err)
		}
		load = func(n int) {
			for i := 0; i < n; i++ {
				go func() {
					for {
						start := nowMs()
						if err := call(); err != nil {
							fail("call: %v", err)
						}
						rec.record(nowMs() - start)
					}
				}()
			}
		}
		emit(map[string]any{"ready": nil})

	case "subscriber":
		b := broker.NewHttpBroker(broker.Registry(reg), broker.Addrs("127.0.0.1:0"))
		if err := b.Connect(); err != nil {
			fail("broker connect: %v", err)
		}
		credits, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fail("credit listener: %v", err)
		}
		var mu sync.Mutex
		var publisher net.Conn
		owed := 0
		go func() {
			conn, err := credits.Accept()
			if err == nil {
				mu.Lock()
				publisher = conn
				mu.Unlock()
			}
		}()
		topic := os.Getenv("BENCH_TOPIC")
		_, err = b.Subscribe(topic, func(e broker.Event) error {
			body := e.Message().Body
			sent := math.Float64frombits(binary.BigEndian.Uint64(body[:8]))
			rec.record(nowMs() - sent)
			mu.Lock()
			defer mu.Unlock()
			if owed++; owed >= creditBatch && publisher != nil {
				var buf [4]byte
				binary.BigEndian.PutUint32(buf[:], uint32(owed))
				publisher.Write(buf[:])
				owed = 0
			}
			return nil
		})
		if err != nil {
			fail("subscribe: %v", err)
		}
		records, err := reg.GetService("micro.http.broker")
		if err != nil {
			fail("own record: %v", err)
		}
		emit(map[string]any{"ready": map[string]any{"records": records, "creditPort": credits.Addr().(*net.TCPAddr).Port}})

	case "publisher":
		peerRecords(reg, peer.Records)
		b := broker.NewHttpBroker(broker.Registry(reg), broker.Addrs("127.0.0.1:0"))
		if err := b.Connect(); err != nil {
			fail("broker connect: %v", err)
		}
		conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", peer.CreditPort))
		if err != nil {
			fail("credit connection: %v", err)
		}
		// A slot per event in flight: publishing takes one, the subscriber's credits give them back.
		slots := make(chan struct{}, window)
		go func() {
			var buf [4]byte
			for {
				if _, err := io.ReadFull(conn, buf[:]); err != nil {
					return
				}
				for n := binary.BigEndian.Uint32(buf[:]); n > 0; n-- {
					<-slots
				}
			}
		}()
		topic := os.Getenv("BENCH_TOPIC")
		load = func(n int) {
			for i := 0; i < n; i++ {
				go func() {
					for {
						start := nowMs()
						slots <- struct{}{}
						body := make([]byte, eventBytes)
						for j := range body {
							body[j] = 'a'
						}
						binary.BigEndian.PutUint64(body, math.Float64bits(nowMs()))
						if err := b.Publish(topic, &broker.Message{Header: map[string]string{}, Body: body}); err != nil {
							fail("publish: %v", err)
						}
						rec.record(nowMs() - start)
					}
				}()
			}
		}
		emit(map[string]any{"ready": nil})

	default:
		fail("BENCH_ROLE must be server, client, subscriber or publisher")
	}

	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		switch f := strings.Fields(in.Text()); {
		case len(f) == 2 && f[0] == "load" && load != nil:
			n, _ := strconv.Atoi(f[1])
			load(n)
		case len(f) == 1 && f[0] == "mark":
			mark(rec)
		}
	}
}

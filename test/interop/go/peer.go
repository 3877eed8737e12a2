// A go-micro peer for tsmicro's interop suite: student_service, a client, a publisher and a
// subscriber of the walkthrough's Student, chosen by PEER_MODE. Registry, broker and their
// addresses come from go-micro's own flags/environment (MICRO_REGISTRY, MICRO_BROKER, …), as in any
// go-micro program. Every result is one JSON line on stdout. PEER_DURABLE_QUEUE=1 subscribes with
// the rabbitmq broker's DurableQueue() (durableQueue: v4/plugins.go, v5/rabbitmq.go).
//
// One source for every go-micro version: build.sh writes it into each version's module as main.go
// with that version's import path (go-micro.dev/v5 here), so v4/ and v5/ hold only their go.mod and
// what differs (v4/plugins.go: v4 keeps its registries and brokers in separate plugin modules).
package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	micro "go-micro.dev/v5"
	"go-micro.dev/v5/broker"
	"go-micro.dev/v5/client"
	"go-micro.dev/v5/errors"
	"go-micro.dev/v5/metadata"
	"go-micro.dev/v5/server"

	pb "tsmicro.test/interop/studentpb"
)

func env(key, fallback string) string {
	if v, ok := os.LookupEnv(key); ok {
		return v
	}
	return fallback
}

func emit(v any) {
	line, _ := json.Marshal(v)
	fmt.Println(string(line))
}

func fail(format string, args ...any) {
	emit(map[string]string{"fatal": fmt.Sprintf(format, args...)})
	os.Exit(1)
}

// StudentManager is the walkthrough's service: "davie" is found, "deadline" answers with the
// milliseconds left before the deadline the caller's Timeout header set, "slow" overruns it,
// anyone else is a 404. With relayTo (PEER_RELAY_TO) it passes every request on to that service
// with the incoming context, as a go-micro handler calling another service does: the caller's
// metadata (a W3C traceparent among it) goes along.
type StudentManager struct {
	service string
	relayTo string
	client  client.Client
}

func (h *StudentManager) GetStudent(ctx context.Context, req *pb.StudentRequest, rsp *pb.Student) error {
	if h.relayTo != "" {
		return h.client.Call(ctx, h.client.NewRequest(h.relayTo, "StudentManager.GetStudent", req), rsp)
	}
	switch req.Name {
	case "davie":
		rsp.Name, rsp.Classes, rsp.Grade, rsp.Phone = "davie", "软件工程专业", 80, "12345678901"
		return nil
	case "deadline":
		deadline, ok := ctx.Deadline()
		if !ok {
			return errors.InternalServerError(h.service, "no deadline")
		}
		rsp.Name, rsp.Grade = "deadline", int32(time.Until(deadline).Milliseconds())
		return nil
	case "slow":
		// Overruns the caller's deadline: waits for ctx to end (at most 10 s) and reports how.
		started := time.Now()
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Second):
		}
		emit(map[string]any{"slow": time.Since(started).Milliseconds(), "ctxErr": fmt.Sprint(ctx.Err())})
		return errors.Timeout(h.service, "slow: %v", ctx.Err())
	}
	return errors.NotFound(h.service, "no student named %q", req.Name)
}

func newService(opts ...micro.Option) micro.Service {
	s := micro.NewService(append([]micro.Option{micro.HandleSignal(false)}, opts...)...)
	s.Init()
	return s
}

func waitForSignal() {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT)
	<-ch
}

func main() {
	switch mode := env("PEER_MODE", ""); mode {
	case "server":
		serve()
	case "client":
		call()
	case "publish":
		publish()
	case "subscribe":
		subscribe()
	default:
		fail("PEER_MODE must be server, client, publish or subscribe, not %q", mode)
	}
}

func serve() {
	name := env("PEER_SERVICE", "student_service")
	s := newService(micro.Name(name), micro.Version("v1.0.0"), micro.Address("127.0.0.1:0"))
	if err := micro.RegisterHandler(s.Server(), &StudentManager{service: name, relayTo: env("PEER_RELAY_TO", ""), client: s.Client()}); err != nil {
		fail("register handler: %v", err)
	}
	if err := s.Server().Start(); err != nil {
		fail("start: %v", err)
	}
	opts := s.Server().Options()
	emit(map[string]string{"ready": opts.Name + "-" + opts.Id, "address": opts.Address})
	waitForSignal()
	if err := s.Server().Stop(); err != nil {
		fail("stop: %v", err)
	}
}

func studentJSON(s *pb.Student) map[string]any {
	return map[string]any{"name": s.Name, "classes": s.Classes, "grade": s.Grade, "phone": s.Phone}
}

func call() {
	s := newService()
	timeout, _ := strconv.Atoi(env("PEER_TIMEOUT_MS", "5000"))
	req := s.Client().NewRequest(env("PEER_SERVICE", "student_service"), "StudentManager.GetStudent",
		&pb.StudentRequest{Name: env("PEER_NAME", "davie")}, client.WithContentType(env("PEER_CONTENT_TYPE", "application/json")))
	rsp := &pb.Student{}
	err := s.Client().Call(context.Background(), req, rsp, client.WithRequestTimeout(time.Duration(timeout)*time.Millisecond))
	if err != nil {
		emit(map[string]any{"error": errors.Parse(err.Error())})
		return
	}
	emit(map[string]any{"student": studentJSON(rsp)})
}

// publish sends PEER_COUNT messages: raw (PEER_HEADER JSON, PEER_BODY base64) through the broker,
// or typed (PEER_CONTENT_TYPE) through micro.NewEvent, then waits PEER_LINGER_MS for brokers
// that deliver asynchronously.
func publish() {
	s := newService(micro.Name("interop-publisher"))
	b := s.Options().Broker
	if err := b.Connect(); err != nil {
		fail("broker connect: %v", err)
	}
	topic := env("PEER_TOPIC", "go.micro.srv.message")
	count, _ := strconv.Atoi(env("PEER_COUNT", "1"))
	for i := 0; i < count; i++ {
		var err error
		if ct := env("PEER_CONTENT_TYPE", ""); ct != "" {
			student := &pb.Student{Name: "davie", Classes: "软件工程专业", Grade: int32(80 + i), Phone: "12345678901"}
			ctx := metadata.NewContext(context.Background(), map[string]string{"name": "davie"})
			err = s.Client().Publish(ctx, s.Client().NewMessage(topic, student, client.WithMessageContentType(ct)))
		} else {
			header := map[string]string{}
			if err := json.Unmarshal([]byte(env("PEER_HEADER", "{}")), &header); err != nil {
				fail("PEER_HEADER: %v", err)
			}
			body, err2 := base64.StdEncoding.DecodeString(env("PEER_BODY", ""))
			if err2 != nil {
				fail("PEER_BODY: %v", err2)
			}
			err = b.Publish(topic, &broker.Message{Header: header, Body: body})
		}
		if err != nil {
			fail("publish: %v", err)
		}
	}
	linger, _ := strconv.Atoi(env("PEER_LINGER_MS", "0"))
	time.Sleep(time.Duration(linger) * time.Millisecond)
	emit(map[string]any{"published": count})
	_ = b.Disconnect()
}

// subscribe prints every message of PEER_TOPIC (queue PEER_QUEUE): raw header and base64 body, or
// with PEER_TYPED=1 the Student a typed subscriber decoded and the metadata it saw.
func subscribe() {
	topic := env("PEER_TOPIC", "go.micro.srv.message")
	queue := env("PEER_QUEUE", "")
	s := newService(micro.Name(env("PEER_SERVICE", "interop-subscriber")), micro.Address("127.0.0.1:0"))
	if env("PEER_TYPED", "") != "" {
		var opts []server.SubscriberOption
		if queue != "" {
			opts = append(opts, server.SubscriberQueue(queue))
		}
		handler := func(ctx context.Context, student *pb.Student) error {
			md, _ := metadata.FromContext(ctx)
			emit(map[string]any{"topic": topic, "header": md, "student": studentJSON(student)})
			return nil
		}
		if err := micro.RegisterSubscriber(topic, s.Server(), handler, opts...); err != nil {
			fail("register subscriber: %v", err)
		}
		if err := s.Server().Start(); err != nil {
			fail("start: %v", err)
		}
		emit(map[string]string{"ready": topic})
		waitForSignal()
		_ = s.Server().Stop()
		return
	}
	b := s.Options().Broker
	if err := b.Connect(); err != nil {
		fail("broker connect: %v", err)
	}
	var opts []broker.SubscribeOption
	if queue != "" {
		opts = append(opts, broker.Queue(queue))
	}
	if env("PEER_DURABLE_QUEUE", "") != "" {
		opts = append(opts, durableQueue())
	}
	_, err := b.Subscribe(topic, func(e broker.Event) error {
		m := e.Message()
		emit(map[string]any{"topic": e.Topic(), "header": m.Header, "body": base64.StdEncoding.EncodeToString(m.Body)})
		return nil
	}, opts...)
	if err != nil {
		fail("subscribe: %v", err)
	}
	emit(map[string]string{"ready": topic})
	waitForSignal()
	_ = b.Disconnect()
}

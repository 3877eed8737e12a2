// go-micro v4 keeps its registries and brokers in plugin modules: importing one registers it by name.
package main

import (
	"github.com/go-micro/plugins/v4/broker/rabbitmq"
	"go-micro.dev/v4/broker"

	_ "github.com/go-micro/plugins/v4/broker/kafka"
	_ "github.com/go-micro/plugins/v4/broker/mqtt"
	_ "github.com/go-micro/plugins/v4/broker/nats"
	_ "github.com/go-micro/plugins/v4/broker/redis"
	_ "github.com/go-micro/plugins/v4/registry/consul"
	_ "github.com/go-micro/plugins/v4/registry/etcd"
	_ "github.com/go-micro/plugins/v4/registry/nats"
	_ "github.com/go-micro/plugins/v4/registry/zookeeper"
)

// durableQueue declares a queue group's queue durable (the rabbitmq plugin's option).
func durableQueue() broker.SubscribeOption { return rabbitmq.DurableQueue() }

//go:build tools

// Package nsq pins the NSQ release whose nsqd .ci/setup/nsq.sh builds (go build
// github.com/nsqio/nsq/apps/nsqd); the blank import keeps it in go.mod and go.sum.
package nsq

import _ "github.com/nsqio/nsq/apps/nsqd"

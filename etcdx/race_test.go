//go:build race

package etcdx_test

const raceEnabled = true

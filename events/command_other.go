//go:build !unix

package events

import (
	"os"
	"os/exec"
)

// setProcessGroup does nothing where process groups do not exist.
func setProcessGroup(*exec.Cmd) {}

// killProcessGroup kills the command's own process; its children are not reached here.
func killProcessGroup(cmd *exec.Cmd) { _ = cmd.Process.Kill() }

// signalStatus reports nothing: only unix ends processes with signals.
func signalStatus(*os.ProcessState) (int, bool) { return 0, false }

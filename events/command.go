package events

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"time"
	"unicode/utf8"
)

// TimeoutOutput starts the output of a command that ran out of time, as in Sensu; what the
// command wrote before it was killed follows.
const TimeoutOutput = "Execution timed out\n"

// Exit statuses RunCommand reports for commands that did not exit on their own, following
// the plugin convention (2 CRITICAL, 3 UNKNOWN) as Sensu does.
const (
	StatusTimedOut = 2
	StatusUnknown  = 3
)

// drainGrace bounds how long RunCommand waits for output once the command's process
// group is gone: only a process that left the group (setsid) can still hold the pipe.
const drainGrace = time.Second

// CommandSpec is a command for RunCommand to run: a check, a hook, a pipe handler or a
// pipe mutator.
type CommandSpec struct {
	// Command is run by "sh -c", so pipes and redirections work.
	Command string
	// Env is added to the environment of the calling process (the agent's or the
	// server's), as Sensu does with env_vars; a later NAME=value wins over an earlier one.
	Env []string
	// Stdin is written to the command's standard input; nil gives it an empty one.
	Stdin []byte
	// Timeout, if positive, is how long the command may run before it is killed.
	Timeout time.Duration
	// MaxOutput, if positive, caps the output at that many bytes: the rest is read and
	// discarded, so the command never blocks on a full pipe. Zero keeps everything.
	MaxOutput int
	// Dir is the working directory; empty means the caller's.
	Dir string
	// Stderr, if set, receives standard error, and Output holds standard output only
	// (pipe mutators, whose output is data). Nil interleaves both streams in Output.
	Stderr io.Writer
}

// CommandResult is what a command did.
type CommandResult struct {
	// Output is standard output and standard error interleaved as they were written,
	// capped at MaxOutput bytes (cut at a UTF-8 character boundary).
	Output string
	// Status is the exit status: the command's own; 128+n when signal n ended it;
	// StatusTimedOut when it ran out of time; StatusUnknown when it could not start or
	// was cancelled. The shell reports 127 for a command it cannot find.
	Status int
	// Duration is how long the command ran.
	Duration time.Duration
	// TimedOut is set when Timeout ended the command. Output then starts with
	// TimeoutOutput.
	TimedOut bool
	// Err is set when the command could not be started, or when ctx ended before it
	// finished (ctx.Err()); such a result should not be reported as a check result.
	Err error
}

// RunCommand runs spec.Command with "sh -c" in a process group of its own and waits for
// it. When Timeout passes or ctx ends, it kills the whole group, including background
// processes the command started, so none of them outlives the run or keeps the output pipe
// open; when the shell exits on its own, whatever it left running in its group is killed
// too. RunCommand returns once the group is gone and the output read.
func RunCommand(ctx context.Context, spec CommandSpec) CommandResult {
	start := time.Now()
	res := run(ctx, spec)
	res.Duration = time.Since(start)
	return res
}

func run(ctx context.Context, spec CommandSpec) CommandResult {
	if err := ctx.Err(); err != nil {
		return CommandResult{Status: StatusUnknown, Err: err}
	}
	// One pipe for both streams keeps them in the order they were written, as a
	// terminal would show them.
	pr, pw, err := os.Pipe()
	if err != nil {
		return CommandResult{Status: StatusUnknown, Err: err}
	}
	cmd := exec.Command("sh", "-c", spec.Command)
	cmd.Env = append(os.Environ(), spec.Env...)
	cmd.Dir = spec.Dir
	cmd.Stdout, cmd.Stderr = pw, pw
	if spec.Stderr != nil {
		cmd.Stderr = spec.Stderr
	}
	if spec.Stdin != nil {
		cmd.Stdin = bytes.NewReader(spec.Stdin)
	}
	// Stdin is copied by a goroutine of exec's; bound the wait for it should a process
	// outside the group hold the pipe without reading.
	cmd.WaitDelay = drainGrace
	setProcessGroup(cmd)
	if err := cmd.Start(); err != nil {
		pr.Close()
		pw.Close()
		return CommandResult{Status: StatusUnknown, Err: err}
	}
	pw.Close() // the children hold their own copies; EOF comes when the last one closes

	output := make(chan []byte, 1)
	go func() { output <- readCapped(pr, spec.MaxOutput) }()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	var timeout <-chan time.Time
	if spec.Timeout > 0 {
		timer := time.NewTimer(spec.Timeout)
		defer timer.Stop()
		timeout = timer.C
	}
	var res CommandResult
	var waitErr error
	select {
	case waitErr = <-exited:
		// The shell's pid is reaped now, but its group lives on while any member does,
		// and the kernel does not reuse a pid that names a live group.
		killProcessGroup(cmd)
	case <-timeout:
		res.TimedOut = true
		killProcessGroup(cmd)
		waitErr = <-exited
	case <-ctx.Done():
		res.Err = ctx.Err()
		killProcessGroup(cmd)
		waitErr = <-exited
	}

	var out []byte
	select {
	case out = <-output:
	case <-time.After(drainGrace):
		pr.Close() // unblocks the reader, which returns what it has
		out = <-output
	}
	pr.Close()

	res.Output = string(out)
	switch {
	case res.TimedOut:
		res.Status = StatusTimedOut
		res.Output = TimeoutOutput + res.Output
	case res.Err != nil:
		res.Status = StatusUnknown
	default:
		res.Status = exitStatus(cmd, waitErr)
	}
	return res
}

// exitStatus is the command's exit status from Wait's result.
func exitStatus(cmd *exec.Cmd, waitErr error) int {
	if cmd.ProcessState == nil {
		return StatusUnknown
	}
	if st, ok := signalStatus(cmd.ProcessState); ok {
		return st
	}
	var exitErr *exec.ExitError
	if waitErr != nil && !errors.As(waitErr, &exitErr) && !errors.Is(waitErr, exec.ErrWaitDelay) {
		return StatusUnknown
	}
	return cmd.ProcessState.ExitCode()
}

// readCapped reads r to its end or first error, keeping at most max bytes (all if max is
// not positive) and cutting an incomplete UTF-8 character off the end of what it keeps.
func readCapped(r io.Reader, max int) []byte {
	var buf bytes.Buffer
	chunk := make([]byte, 32*1024)
	truncated := false
	for {
		n, err := r.Read(chunk)
		if n > 0 {
			keep := n
			if max > 0 {
				keep = min(n, max-buf.Len())
				truncated = truncated || keep < n
			}
			buf.Write(chunk[:keep])
		}
		if err != nil {
			break
		}
	}
	if truncated {
		return trimPartialRune(buf.Bytes())
	}
	return buf.Bytes()
}

// trimPartialRune cuts a UTF-8 character that a cap split off the end of b. Other invalid
// bytes are the command's own and stay.
func trimPartialRune(b []byte) []byte {
	for i := len(b) - 1; i >= 0 && i >= len(b)-utf8.UTFMax; i-- {
		if utf8.RuneStart(b[i]) {
			if !utf8.FullRune(b[i:]) {
				return b[:i]
			}
			return b
		}
	}
	return b
}

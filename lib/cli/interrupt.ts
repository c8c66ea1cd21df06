// Stopping a training run from outside: Ctrl-C (SIGINT) and SIGTERM, which SLURM, Kubernetes and
// systemd send before killing a job, both finish the current step, write one checkpoint and exit
// with 128 + the signal's number (130, 143), so a scheduler sees the run as interrupted and
// `--resume` continues it. The same signal again exits at once.
const EXIT_CODES = { SIGINT: 130, SIGTERM: 143 } as const
type StopSignal = keyof typeof EXIT_CODES

export interface Interrupt {
  readonly signal: AbortSignal
  /** The exit code for the signal received, or undefined when none was. */
  exitCode(): number | undefined
  /** Stops listening (when training is over). */
  dispose(): void
}

export function onInterrupt(note: (line: string) => void): Interrupt {
  const abort = new AbortController()
  let received: StopSignal | undefined
  const handlers = (Object.keys(EXIT_CODES) as StopSignal[]).map((sig) => {
    const handler = () => {
      if (abort.signal.aborted) process.exit(EXIT_CODES[sig])
      received = sig
      const again = sig === 'SIGINT' ? 'Ctrl-C' : sig
      note(`interrupted${sig === 'SIGINT' ? '' : ` (${sig})`}: finishing this step and writing a checkpoint (${again} again to quit now)`)
      abort.abort()
    }
    process.on(sig, handler)
    return [sig, handler] as const
  })
  return {
    signal: abort.signal,
    exitCode: () => (received === undefined ? undefined : EXIT_CODES[received]),
    dispose: () => {
      for (const [sig, handler] of handlers) process.off(sig, handler)
    },
  }
}

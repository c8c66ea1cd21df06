// One rank of a test's data-parallel runs: joins the group from RANK / WORLD_SIZE /
// EDPO_DIST_STORE once, then trains each job of the JSON file argv[2] in turn with a fresh
// Trainer or SftTrainer on that group (so two processes serve many runs), printing "done <out>".
import * as fs from 'node:fs'
import * as path from 'node:path'

import { readDistEnv } from '../../lib/distributed/env'
import { DistGroup } from '../../lib/distributed/group'
import { SftTrainer, Trainer } from '../../lib/train/engine'

interface Job {
  kind: 'train' | 'sft'
  config: Record<string, unknown>
  /** Rank 0 copies this checkpoint folder first (a run cut after it), the other rank waits for it. */
  copyBefore?: { from: string; to: string }
  /** Resume this checkpoint folder (config then holds only what changes). */
  resume?: string
  /** Append each step's metrics as this rank saw them to <out>/rank-<r>-steps.jsonl. */
  stepLog?: boolean
}

async function main(): Promise<void> {
  const env = readDistEnv()
  if (!env) throw new Error('dist-worker: RANK / WORLD_SIZE are not set')
  const group = await DistGroup.join(env, { device: 'cpu', timeoutSeconds: 60 })
  const jobs = JSON.parse(fs.readFileSync(process.argv[2]!, 'utf8')) as Job[]
  for (const job of jobs) {
    if (job.copyBefore) {
      if (env.rank === 0) fs.cpSync(job.copyBefore.from, job.copyBefore.to, { recursive: true })
      await group.barrier()
    }
    const opts = { dist: group, log: () => {}, ...(job.resume ? { resume: job.resume } : {}) }
    const trainer = job.kind === 'sft' ? await SftTrainer.create(job.config as never, opts) : await Trainer.create(job.config as never, opts)
    if (job.stepLog) {
      const log = path.join(job.config.out as string, `rank-${env.rank}-steps.jsonl`)
      trainer.on('step', (s) => fs.appendFileSync(log, JSON.stringify({ step: s.step, ...s.metrics }) + '\n'))
    }
    await trainer.train()
    process.stdout.write(`done ${(job.config.out as string | undefined) ?? job.resume}\n`)
    // The finished run's models, optimizer and reducer go now: the next job's memory report
    // (EDPO_MEMORY_REPORT counts every live tensor) sees only its own. The collection is for
    // what the test's own code left (startRankPair passes --expose-gc; N-API finalizers run in a
    // later turn of the event loop).
    trainer.dispose()
    ;(globalThis as { gc?: () => void }).gc?.()
    await new Promise((resolve) => setImmediate(resolve))
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`rank ${process.env.RANK}: ${(e as Error).stack ?? String(e)}\n`)
  process.exit(1)
})

// Trainer after trainer in one process (test/trainer-dispose.test.ts), with --expose-gc: the
// collector runs before each trainer is made, so the live tensor bytes counted then are the
// baseline, and none of the garbage that exists at dispose() time was made before. Prints one JSON
// line per run: the bytes the trained run holds, and those still live after dispose().
import * as path from 'node:path'

import { memoryStats } from '../../lib/core/memory'
import { SftTrainer, Trainer } from '../../lib/train/engine'

async function main(): Promise<void> {
  const [model, referenceModel, data, work] = process.argv.slice(2) as [string, string, string, string]
  const gc = (globalThis as { gc?: () => void }).gc
  if (!gc) throw new Error('dispose-run: run with --expose-gc')
  const live = () => memoryStats().tensorBytes
  const base = { model, data: [data], learningRate: 1e-3, warmupRatio: 0, maxLength: 32, maxSteps: 2, batchSize: 2, seed: 3 }
  const quiet = { log: () => {} }
  const runs: [string, () => Promise<Trainer | SftTrainer>][] = [
    [
      'epsilon-dpo with a reference model',
      () => Trainer.create({ ...base, evalData: [data], referenceModel, epsilon: 0.01, out: path.join(work, 'a') }, quiet),
    ],
    ['epsilon-dpo LoRA', () => Trainer.create({ ...base, loraR: 4, loraDropout: 0, out: path.join(work, 'b') }, quiet)],
    ['tr-dpo', () => Trainer.create({ ...base, method: 'tr-dpo', trDpoTau: 1, referenceModel, out: path.join(work, 'c') }, quiet)],
    ['kto', () => Trainer.create({ ...base, method: 'kto', referenceModel, out: path.join(work, 'd') }, quiet)],
    ['sft', () => SftTrainer.create({ ...base, out: path.join(work, 'e') } as never, quiet)],
  ]
  for (const [label, make] of runs) {
    gc()
    const before = live()
    const trainer = await make()
    await trainer.train()
    const trained = live() - before
    trainer.dispose()
    process.stdout.write(JSON.stringify({ label, trained, disposed: live() - before }) + '\n')
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`${(e as Error).stack ?? String(e)}\n`)
  process.exit(1)
})

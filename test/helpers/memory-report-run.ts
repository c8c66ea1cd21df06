// One ε-DPO training run in a process of its own, so that no other run's tensors are alive (the
// memory report counts every live tensor): argv = model dir, data file, out dir, then the JSON
// of the remaining Trainer options. Prints the last step's memory/*_bytes as one JSON object.
import { Trainer } from '../../lib/train/engine'

async function main(): Promise<void> {
  const [model, data, out, extra] = process.argv.slice(2) as [string, string, string, string]
  process.env.EDPO_MEMORY_REPORT = '1'
  const trainer = await Trainer.create({ model, data: [data], out, ...(JSON.parse(extra) as Record<string, unknown>) } as never, { log: () => {} })
  let last: Record<string, number> = {}
  trainer.on('step', (s) => {
    last = Object.fromEntries(
      Object.entries(s.metrics)
        .filter(([k]) => k.startsWith('memory/'))
        .map(([k, v]) => [k.slice('memory/'.length, -'_bytes'.length), v as number]),
    )
  })
  await trainer.train()
  process.stdout.write(JSON.stringify(last) + '\n')
}

main().catch((e: unknown) => {
  process.stderr.write(`${(e as Error).stack ?? String(e)}\n`)
  process.exit(1)
})

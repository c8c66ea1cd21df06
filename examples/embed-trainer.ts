// Running ε-DPO training from your own Node program, with your own logging and stop condition.
//   node --import tsx examples/embed-trainer.ts <model dir> <prefs.jsonl> <run dir> [max steps]
import { Trainer } from 'edpo'

async function main(): Promise<void> {
  const [model, data, out, steps = '4'] = process.argv.slice(2)
  if (!model || !data || !out) throw new Error('usage: embed-trainer.ts <model dir> <prefs.jsonl> <run dir> [max steps]')

  const trainer = await Trainer.create(
    { model, data: [data], out, maxSteps: Number(steps), batchSize: 4, learningRate: 1e-3, maxLength: 64, saveEvery: 2 },
    { log: (line) => console.error(`[data] ${line}`) },
  )
  // Events instead of a progress bar: forward them to any logger or metrics system.
  trainer.on('log', (m) => console.log(JSON.stringify({ event: 'log', step: m.step, loss: m.loss, beta: m['kl/beta'], accuracy: m['rewards/accuracies'] })))
  trainer.on('checkpoint', (dir) => console.log(JSON.stringify({ event: 'checkpoint', dir })))

  // Stop cleanly (with a checkpoint) on Ctrl-C or after ten minutes, whichever comes first.
  const stop = new AbortController()
  process.once('SIGINT', () => stop.abort())
  const state = await trainer.train({ signal: AbortSignal.any([stop.signal, AbortSignal.timeout(600_000)]) })
  console.log(JSON.stringify({ event: 'done', step: state.step, beta: state.method.beta }))
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})

// Child process for test/worker-terminate.test.ts: starts a Worker that loops over edpo ops,
// terminates it mid-loop, and prints OK when the host survives.
import * as path from 'node:path'
import { Worker } from 'node:worker_threads'

const worker = new Worker(path.join(__dirname, 'terminate-worker.ts'), { execArgv: process.execArgv })
worker.on('error', (e) => {
  console.error(`worker error: ${e.message}`)
  process.exit(2)
})
worker.once('message', () => {
  // Let it get deep into the loop, then pull the environment out from under it.
  setTimeout(() => {
    void worker.terminate().then(() => {
      console.log('OK')
      process.exit(0)
    })
  }, 300)
})

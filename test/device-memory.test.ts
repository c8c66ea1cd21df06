// deviceMemory(device): one device's tensor bytes as its allocator counts them. On the CPU it is the
// addon's counting allocator (memoryStats); on a GPU, CUDA's caching allocator, which the memory
// report reads for a GPU run (device_* fields, activations). The GPU half runs only where a CUDA
// device is usable; elsewhere a CUDA device is refused with an error that names the build.
import t from 'tap'

import { runtime, Tensor } from '../lib/index'
import { deviceMemory, memoryStats, resetDeviceMemoryPeak } from '../lib/core/memory'
import { liveTensorBytes, memoryReport } from '../lib/train/memory-report'

t.test('on the CPU it is the counting allocator: exact bytes, the same peak as memoryStats', async (t) => {
  const before = deviceMemory('cpu')
  t.equal(before.tensorBytes, memoryStats().tensorBytes, 'live bytes as memoryStats counts them')
  const x = Tensor.zeros([1000], { dtype: 'float32' })
  t.equal(deviceMemory('cpu').tensorBytes - before.tensorBytes, 4000, 'a [1000] float32 tensor adds 4000 bytes')
  t.equal(liveTensorBytes('cpu'), deviceMemory('cpu').tensorBytes, 'liveTensorBytes reads the same counter')
  resetDeviceMemoryPeak('cpu')
  const live = deviceMemory('cpu').tensorBytes
  t.equal(deviceMemory('cpu').peakTensorBytes, live, 'after the reset, the peak is what is live')
  const y = Tensor.zeros([2000], { dtype: 'float32' })
  y.dispose()
  const after = deviceMemory('cpu')
  t.equal(after.peakTensorBytes, live + 8000, 'a freed tensor stays in the peak')
  t.equal(after.peakTensorBytes, memoryStats().peakTensorBytes, 'the same peak as memoryStats')
  if (after.reservedBytes !== undefined) t.ok(after.reservedBytes >= after.tensorBytes, 'reserved holds the live bytes')
  t.equal(after.peakReservedBytes, undefined, 'no reserved peak on the CPU')
  x.dispose()
})

t.test('a CPU run reports no device fields', async (t) => {
  const w = Tensor.zeros([10], { dtype: 'float32' })
  const r = memoryReport({ policy: [w], optimizerState: {}, grads: [], activations: 0, device: 'cpu' })
  t.equal(r.policy_weights, 40)
  t.equal(r.device_peak_tensors, undefined)
  t.notOk(
    Object.keys(r).some((k) => k.startsWith('device_')),
    Object.keys(r).join(', '),
  )
  w.dispose()
})

t.test('bad devices are refused by name', async (t) => {
  t.throws(() => deviceMemory('tpu'), /device/, "'tpu' is no device")
  if (!runtime().cudaBuild) t.throws(() => deviceMemory('cuda'), /CUDA build/, 'a CPU build names the CUDA build')
})

t.test(
  'on a GPU, CUDA caching allocator counts: a tensor adds its bytes, the peak keeps a freed one',
  { skip: !runtime().cudaAvailable && 'no CUDA device' },
  async (t) => {
    const before = deviceMemory('cuda')
    // 4 MiB: above the allocator's small-block pool, rounded to its 512-byte granule.
    const x = Tensor.zeros([1 << 20], { dtype: 'float32', device: 'cuda' })
    t.equal(deviceMemory('cuda').tensorBytes - before.tensorBytes, 4 << 20)
    resetDeviceMemoryPeak('cuda')
    const live = deviceMemory('cuda').tensorBytes
    const y = Tensor.zeros([1 << 20], { dtype: 'float32', device: 'cuda' })
    y.dispose()
    const after = deviceMemory('cuda')
    t.equal(after.peakTensorBytes, live + (4 << 20))
    t.ok((after.reservedBytes ?? 0) >= after.tensorBytes && (after.peakReservedBytes ?? 0) >= after.peakTensorBytes)
    const r = memoryReport({ policy: [x], optimizerState: {}, grads: [], activations: 0, device: 'cuda' })
    t.ok((r.device_peak_tensors ?? 0) >= r.policy_weights, `device peak ${r.device_peak_tensors} holds the weights ${r.policy_weights}`)
    x.dispose()
  },
)

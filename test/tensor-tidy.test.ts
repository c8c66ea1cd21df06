// Tensor.tidy(fn): the tensors a synchronous fn makes are disposed when it returns, except those it
// returns (a tensor, or in an array or an object's values), which an enclosing tidy then owns;
// tensors made outside are never touched, and an async fn is refused.
import t from 'tap'

import { Tensor } from '../lib/index'

t.test('intermediates go, results stay, outer tensors are untouched', (t) => {
  const x = Tensor.from(Float64Array.from([1, 2, 3]), [3])
  let inner: Tensor[] = []
  const out = Tensor.tidy(() => {
    const a = x.mul(2)
    const b = a.add(1)
    inner = [a, b]
    return { sum: b.sum(), kept: b }
  })
  t.ok(inner[0]!.disposed, 'an intermediate is disposed')
  t.notOk(inner[1]!.disposed, 'a returned tensor (object value) is kept')
  t.notOk(x.disposed, 'a tensor made outside is untouched')
  t.equal(out.sum.item(), 15)
  const list = Tensor.tidy(() => [x.add(1), x.add(2)])
  t.same(
    list.map((l) => l.disposed),
    [false, false],
    'array elements are kept',
  )
  t.end()
})

t.test('nested: the inner result belongs to the outer scope', (t) => {
  let innerResult: Tensor | undefined
  const x = Tensor.from(Float64Array.from([1]), [1])
  Tensor.tidy(() => {
    innerResult = Tensor.tidy(() => x.mul(3).add(1))
    t.notOk(innerResult.disposed, 'alive inside the outer scope')
    return undefined
  })
  t.ok(innerResult!.disposed, 'disposed when the outer scope ends without returning it')
  t.end()
})

t.test('an async fn is refused', (t) => {
  t.throws(() => Tensor.tidy(async () => 1), /Tensor.tidy: fn must be synchronous/)
  t.end()
})

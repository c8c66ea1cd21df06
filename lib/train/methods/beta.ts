// The global β of ε-DPO (spec §6): every micro-batch of an optimizer step uses the same β; the
// steps s_i of ALL pairs in the step are averaged, then β ← β / (1 + ε·s̄) once, after the step.
export interface BetaUpdate {
  /** β used by this optimizer step (logged as kl/beta). */
  before: number
  after: number
  /** s̄ over every pair of the step (kl/avg_steps). */
  avgSteps: number
  /** Fractions of pairs with s = +1 and s = −1 (kl/p_epsilon_steps, kl/n_epsilon_steps). */
  plusFraction: number
  minusFraction: number
  pairs: number
}

export class BetaController {
  private sum = 0
  private plus = 0
  private minus = 0
  private pairs = 0

  constructor(
    public beta: number,
    readonly epsilon: number,
  ) {}

  /** Adds the per-pair steps of one micro-batch. */
  accumulate(steps: ArrayLike<number | bigint>): void {
    for (let i = 0; i < steps.length; i++) {
      const s = Number(steps[i])
      this.sum += s
      if (s > 0) this.plus += 1
      if (s < 0) this.minus += 1
      this.pairs += 1
    }
  }

  /** Closes the optimizer step: updates β from s̄ (a step without pairs leaves β as it is). */
  finishStep(): BetaUpdate {
    const before = this.beta
    const n = this.pairs
    const avgSteps = n > 0 ? this.sum / n : 0
    this.beta = before / (1 + this.epsilon * avgSteps)
    const update = {
      before,
      after: this.beta,
      avgSteps,
      plusFraction: n > 0 ? this.plus / n : 0,
      minusFraction: n > 0 ? this.minus / n : 0,
      pairs: n,
    }
    this.sum = this.plus = this.minus = this.pairs = 0
    return update
  }
}

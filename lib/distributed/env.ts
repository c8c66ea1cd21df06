// Where this process stands in a multi-process run, read from the variables torchrun and SLURM
// set (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT; SLURM_PROCID, SLURM_NTASKS,
// SLURM_LOCALID under srun) or that edpo's own launcher sets (it adds EDPO_DIST_STORE: a
// FileStore path, so nothing listens on a socket for a one-machine run). Checked before any work.
import { EdpoInputError } from '../core/errors'

export interface DistEnv {
  rank: number
  worldSize: number
  localRank: number
  /** The rendezvous: a FileStore path (edpo's launcher) or MASTER_ADDR:MASTER_PORT (a TCPStore). */
  store: { kind: 'file'; path: string } | { kind: 'tcp'; host: string; port: number; clientOnly: boolean }
  /** GLOO_SOCKET_IFNAME, as PyTorch reads it. */
  glooInterface?: string
  /** Where the variables came from, for messages. */
  source: 'edpo launcher' | 'torchrun' | 'SLURM'
}

/** Environment variables, as process.env holds them. */
export type Env = Readonly<Record<string, string | undefined>>

function integer(env: Env, name: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const text = env[name]!
  if (!/^\d+$/.test(text.trim()) || Number(text) < min || Number(text) > max)
    throw new EdpoInputError(`${name}=${text}: expected an integer in [${min}, ${max === Number.MAX_SAFE_INTEGER ? '∞' : max}]`)
  return Number(text)
}

/** The distributed setting of this process, or undefined for a plain single-process run. */
export function readDistEnv(env: Env = process.env): DistEnv | undefined {
  const torchrun = env.WORLD_SIZE !== undefined || env.RANK !== undefined
  // srun sets SLURM_PROCID for every task; it means several ranks only with MASTER_ADDR given.
  const slurm = !torchrun && env.SLURM_PROCID !== undefined && env.SLURM_NTASKS !== undefined && env.MASTER_ADDR !== undefined
  if (!torchrun && !slurm) return undefined
  const [rankVar, worldVar, localVar] = slurm ? ['SLURM_PROCID', 'SLURM_NTASKS', 'SLURM_LOCALID'] : ['RANK', 'WORLD_SIZE', 'LOCAL_RANK']
  if (env[worldVar] === undefined)
    throw new EdpoInputError(`${rankVar} is set but ${worldVar} is not: set both (torchrun and srun do), or neither for one process`)
  if (env[rankVar] === undefined)
    throw new EdpoInputError(`${worldVar} is set but ${rankVar} is not: set both (torchrun and srun do), or neither for one process`)
  const worldSize = integer(env, worldVar, 1)
  const rank = integer(env, rankVar, 0, worldSize - 1)
  const localRank = env[localVar] !== undefined ? integer(env, localVar, 0) : rank
  const source = env.EDPO_DIST_STORE !== undefined ? 'edpo launcher' : slurm ? 'SLURM' : 'torchrun'
  const glooInterface = env.GLOO_SOCKET_IFNAME || undefined
  if (env.EDPO_DIST_STORE !== undefined) return { rank, worldSize, localRank, store: { kind: 'file', path: env.EDPO_DIST_STORE }, glooInterface, source }
  if (env.MASTER_ADDR === undefined || env.MASTER_ADDR === '')
    throw new EdpoInputError(`${worldVar}=${worldSize} without MASTER_ADDR: name the rendezvous host (rank 0's address), as torchrun does`)
  if (env.MASTER_PORT === undefined) throw new EdpoInputError(`MASTER_ADDR=${env.MASTER_ADDR} without MASTER_PORT: give the rendezvous port`)
  const port = integer(env, 'MASTER_PORT', 1, 65535)
  // torchrun ≥ 2 serves the store in its agent and tells workers so; its workers only connect.
  const clientOnly = env.TORCHELASTIC_USE_AGENT_STORE === 'True'
  return { rank, worldSize, localRank, store: { kind: 'tcp', host: env.MASTER_ADDR, port, clientOnly }, glooInterface, source }
}

/** A loopback rendezvous host: Gloo then binds its sockets to 127.0.0.1 too. */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || /^127\./.test(host) || host === '::1'
}

/** Errors thrown by edpo. `code` is stable; `message` names the argument, file or field at fault. */
export class EdpoError extends Error {
  constructor(
    message: string,
    readonly code: string,
    options?: { cause?: unknown },
  ) {
    super(message, options)
    this.name = new.target.name
  }
}

/** Bad user input: caught in TypeScript, or by a native op's argument checks (code EDPO_INPUT from the addon). */
export class EdpoInputError extends EdpoError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'EDPO_INPUT', options)
  }
}

/** An error raised by the native addon (libtorch checks, I/O, CUDA). */
export class EdpoNativeError extends EdpoError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'EDPO_NATIVE', options)
  }
}

/** Runs a native call and rethrows its errors as EdpoInputError (the addon's EDPO_INPUT) or EdpoNativeError. */
export function native<T>(call: () => T): T {
  try {
    return call()
  } catch (e) {
    throw asNativeError(e)
  }
}

/** Same for a native call that returns a Promise. */
export async function nativeAsync<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call()
  } catch (e) {
    throw asNativeError(e)
  }
}

function asNativeError(e: unknown): Error {
  if (e instanceof EdpoError) return e
  if (e instanceof Error && (e as { code?: unknown }).code === 'EDPO_INPUT') return new EdpoInputError(e.message, { cause: e })
  if (e instanceof Error) return new EdpoNativeError(e.message, { cause: e })
  return new EdpoNativeError(String(e))
}

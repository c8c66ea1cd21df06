// Turns zod issues into one readable line per field: "opts.dtype: Invalid option: ...".
import type { z } from 'zod'

export function formatZodError(error: z.ZodError, root: string): string {
  return error.issues
    .map((issue) => {
      const where = [root, ...issue.path.map((p) => (typeof p === 'number' ? `[${p}]` : String(p)))]
        .filter((s) => s !== '')
        .join('.')
        .replace(/\.\[/g, '[')
      return `${where}: ${issue.message}`
    })
    .join('; ')
}

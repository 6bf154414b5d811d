/** Formatting for metrics and inventories. */

const GB = 2 ** 30;
const MB = 2 ** 20;

/** Bytes in a few characters: "15.6 GB", "512 MB". */
export function formatBytes(bytes: number): string {
  if (bytes >= GB) {
    const gb = bytes / GB;
    return `${gb >= 100 ? Math.round(gb) : Math.round(gb * 10) / 10} GB`;
  }
  return `${Math.round(bytes / MB)} MB`;
}

/** `used` of `total` as a percentage 0-100, or null when either is unknown. */
export function percentOf(
  used: number | null | undefined,
  total: number | null | undefined
): number | null {
  if (typeof used !== 'number' || typeof total !== 'number' || total <= 0) {
    return null;
  }
  return Math.min(100, Math.max(0, (100 * used) / total));
}

/** How the sidebar words file syncs: progress, summaries, and what to do after a failure. */
import { ISyncProgress, ISyncRun, ISyncSummary, SyncDirection } from './types';

const KB = 1024;
const MB = KB * 1024;
const GB = MB * 1024;

/** A size in a few characters, exact for small files: "8 B", "1.5 KB", "12 MB", "1.2 GB". */
export function formatSize(bytes: number): string {
  const b = Math.max(0, bytes);
  const short = (value: number) =>
    value >= 100
      ? String(Math.round(value))
      : String(Math.round(value * 10) / 10);
  if (b >= GB) {
    return `${short(b / GB)} GB`;
  }
  if (b >= MB) {
    return `${short(b / MB)} MB`;
  }
  if (b >= KB) {
    return `${short(b / KB)} KB`;
  }
  return `${Math.round(b)} B`;
}

/** A transfer rate: "2.1 MB/s". */
export function formatRate(bytesPerSecond: number): string {
  return `${formatSize(bytesPerSecond)}/s`;
}

/** A time left: "4 s", "2 min 5 s", "1 h 3 min". */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) {
    return `${s} s`;
  }
  const minutes = Math.floor(s / 60);
  if (minutes < 60) {
    const rest = s % 60;
    return rest ? `${minutes} min ${rest} s` : `${minutes} min`;
  }
  const hours = Math.floor(minutes / 60);
  const rest = minutes % 60;
  return rest ? `${hours} h ${rest} min` : `${hours} h`;
}

/** The direction as the menu and the summary say it. */
export const DIRECTION_LABELS: Readonly<Record<SyncDirection, string>> = {
  both: 'Sync both ways',
  push: 'Push to the server',
  pull: 'Pull from the server'
};

/** What each direction does, as its tooltip. */
export const DIRECTION_CAPTIONS: Readonly<Record<SyncDirection, string>> = {
  both: "Copy each side's changes to the other; changes on both sides keep both versions",
  push: "Copy the Jupyter root's changes to the server only",
  pull: "Copy the server's changes to the Jupyter root only"
};

/** Who started a sync, for the summary's first words. */
export function triggerLabel(trigger: string): string {
  switch (trigger) {
    case 'kernel':
      return 'Before a kernel start';
    case 'auto':
      return 'Auto-sync';
    case 'cli':
      return 'From the command line';
    default:
      return 'Sync';
  }
}

/** One line about a running sync's progress: "3 of 10 files · 1.2 of 5 MB · 2.1 MB/s · 4 s left". */
export function progressLine(progress: ISyncProgress | null): string {
  if (!progress) {
    return 'Starting…';
  }
  switch (progress.phase) {
    case 'starting':
      return 'Starting…';
    case 'scanning':
      return 'Looking for changes on both sides…';
    case 'comparing':
      return 'Comparing both sides…';
    case 'done':
      return 'Finishing…';
  }
  const parts = [
    `${progress.files_done} of ${progress.files_total} file${
      progress.files_total === 1 ? '' : 's'
    }`
  ];
  if (progress.bytes_total > 0) {
    parts.push(
      `${formatSize(progress.bytes_done)} of ${formatSize(progress.bytes_total)}`
    );
  }
  if (progress.rate > 0) {
    parts.push(formatRate(progress.rate));
  }
  if (typeof progress.eta_seconds === 'number') {
    parts.push(`${formatDuration(progress.eta_seconds)} left`);
  }
  return parts.join(' · ');
}

/** How far a running sync is, 0-1, or null before it knows (scanning, comparing). */
export function progressFraction(
  progress: ISyncProgress | null
): number | null {
  if (!progress || progress.phase !== 'transferring') {
    return null;
  }
  if (progress.bytes_total > 0) {
    return Math.min(1, progress.bytes_done / progress.bytes_total);
  }
  if (progress.files_total > 0) {
    return Math.min(1, progress.files_done / progress.files_total);
  }
  return null;
}

function plural(count: number, one: string, many = `${one}s`): string {
  return `${count} ${count === 1 ? one : many}`;
}

/** The counts of a summary: "1 sent · 0 received · 0 deleted · 1 conflict · 2 skipped". */
export function summaryCounts(summary: ISyncSummary): string[] {
  const more = summary.truncated ? '+' : '';
  const parts = [
    `${summary.sent.files} sent`,
    `${summary.received.files} received`,
    `${summary.deleted.local + summary.deleted.remote} deleted`,
    plural(summary.conflicts.length, 'conflict') + more,
    `${summary.skipped.length}${more} skipped`
  ];
  const chmod = (summary.chmod?.local ?? 0) + (summary.chmod?.remote ?? 0);
  if (chmod > 0) {
    parts.push(`${chmod} mode change${chmod === 1 ? '' : 's'}`);
  }
  if (summary.errors.length > 0) {
    parts.push(plural(summary.errors.length, 'error') + more);
  }
  return parts;
}

/** Whether a summary did nothing and found nothing to report. */
export function isNoop(summary: ISyncSummary): boolean {
  return (
    summary.sent.files === 0 &&
    summary.received.files === 0 &&
    summary.deleted.local + summary.deleted.remote === 0 &&
    (summary.chmod?.local ?? 0) + (summary.chmod?.remote ?? 0) === 0 &&
    summary.conflicts.length === 0 &&
    summary.skipped.length === 0 &&
    summary.errors.length === 0 &&
    !summary.pending
  );
}

/** What to do after a sync that did not complete, in words. */
export function advice(run: ISyncRun): string | null {
  switch (run.state) {
    case 'failed':
      return (
        'Nothing half-written was left in place and what was copied stays recorded. ' +
        'Fix what the message says (check that the server is running and reachable), ' +
        'then sync again.'
      );
    case 'cancelled':
      return 'What was copied before the cancel stays synced; sync again to finish.';
    case 'interrupted':
      return (
        'The Jupyter server running it stopped. What was copied stays synced; ' +
        'sync again to finish.'
      );
    default:
      return null;
  }
}

/** What to do about files that did not sync. */
export const FILE_ERRORS_ADVICE =
  'These files did not sync. A file that changed during the sync syncs next time; ' +
  'for the others, fix what the message says (permissions, disk space), then sync again.';

/** A clock time, 24-hour HH:MM, in the browser's time zone. */
export function formatClock(unixSeconds: number): string {
  const date = new Date(unixSeconds * 1000);
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

const VERBS: Readonly<Record<SyncDirection, [string, string]>> = {
  both: ['Syncing', 'Synced'],
  push: ['Pushing', 'Pushed'],
  pull: ['Pulling', 'Pulled']
};

/**
 * A sync's first words: who started it, what it does or did, and when it ended: "Syncing…",
 * "Synced at 14:32", "Auto-sync: synced at 14:32", "Before a kernel start: pushed work/ at
 * 14:32", "Sync failed at 14:32".
 */
export function runHeadline(run: ISyncRun): string {
  const [doing, done] = VERBS[run.direction] ?? VERBS.both;
  const what = run.path ? ` ${run.path}` : '';
  const at = run.finished ? ` at ${formatClock(run.finished)}` : '';
  let words: string;
  switch (run.state) {
    case 'running':
      words = `${doing}${what}…`;
      break;
    case 'completed':
      words = `${done}${what}${at}`;
      break;
    default:
      words = `${doing.replace(/ing$/, '')}${what} ${run.state}${at}`;
  }
  const who = run.trigger === 'api' ? '' : `${triggerLabel(run.trigger)}: `;
  return who ? who + words[0].toLowerCase() + words.slice(1) : words;
}

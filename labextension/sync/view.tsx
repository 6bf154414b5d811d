/** The sidebar's file sync: a Sync button with its direction menu, progress and summaries. */
import * as React from 'react';

import { IServerEntry, IServerSyncs } from '../tokens';
import {
  advice,
  DIRECTION_CAPTIONS,
  DIRECTION_LABELS,
  FILE_ERRORS_ADVICE,
  formatSize,
  isNoop,
  progressFraction,
  progressLine,
  runHeadline,
  summaryCounts
} from './format';
import { ISyncRun, ISyncSummary, SyncDirection } from './types';

const DIRECTIONS: SyncDirection[] = ['both', 'push', 'pull'];

/** How many conflicts, errors or skipped files are listed before "and N more". */
const LIST_LIMIT = 20;

export interface ISyncButtonProps {
  serverName: string;
  /** Whether the server runs (a sync needs it). */
  running: boolean;
  /** A sync of the server is running, or a request for the server is in flight. */
  busy?: boolean;
  onSync: (direction: SyncDirection) => void;
  /** Opens the server's sync settings (a menu item; without, there is none). */
  onSettings?: () => void;
}

/**
 * "Sync" (both ways) and a menu: both ways, push, pull, and the sync settings. While the
 * server is not running only the settings can be chosen.
 */
export function SyncButton(props: ISyncButtonProps): JSX.Element {
  const { serverName, running, busy } = props;
  const [open, setOpen] = React.useState(false);
  const ref = React.useRef<HTMLSpanElement>(null);

  React.useEffect(() => {
    if (!open) {
      return;
    }
    const onPointer = (event: Event) => {
      if (ref.current && !ref.current.contains(event.target as Node)) {
        setOpen(false);
      }
    };
    const onKey = (event: KeyboardEvent) => {
      if (event.key === 'Escape') {
        setOpen(false);
      }
    };
    document.addEventListener('mousedown', onPointer, true);
    document.addEventListener('keydown', onKey, true);
    return () => {
      document.removeEventListener('mousedown', onPointer, true);
      document.removeEventListener('keydown', onKey, true);
    };
  }, [open]);

  const syncDisabled = !running || !!busy;
  const why = !running
    ? `Start ${serverName} to sync its files`
    : busy
      ? `A sync of ${serverName} is under way`
      : null;
  const choose = (direction: SyncDirection) => {
    setOpen(false);
    props.onSync(direction);
  };
  return (
    <span className="jp-ComputeServers-syncButtons" ref={ref}>
      <button
        type="button"
        className="jp-ComputeServers-action jp-ComputeServers-syncButton"
        data-tool="sync"
        title={
          why ??
          `Sync the Jupyter root and ${serverName} both ways (the menu: push, pull, settings)`
        }
        disabled={syncDisabled}
        onClick={() => choose('both')}
      >
        Sync
      </button>
      <button
        type="button"
        className="jp-ComputeServers-action jp-ComputeServers-syncMenuButton"
        data-tool="sync-menu"
        title={`Sync directions and settings for ${serverName}`}
        aria-haspopup="menu"
        aria-expanded={open}
        aria-label={`More sync options for ${serverName}`}
        onClick={() => setOpen(!open)}
      >
        ▾
      </button>
      {open && (
        <div
          className="jp-ComputeServers-syncMenu"
          role="menu"
          aria-label={`Sync ${serverName}`}
        >
          {DIRECTIONS.map(direction => (
            <button
              key={direction}
              type="button"
              role="menuitem"
              className="jp-ComputeServers-syncMenuItem"
              data-direction={direction}
              title={why ?? DIRECTION_CAPTIONS[direction]}
              disabled={syncDisabled}
              onClick={() => choose(direction)}
            >
              {DIRECTION_LABELS[direction]}
            </button>
          ))}
          {props.onSettings && (
            <button
              type="button"
              role="menuitem"
              className="jp-ComputeServers-syncMenuItem"
              data-direction="settings"
              title={`What ${serverName} syncs, and when`}
              onClick={() => {
                setOpen(false);
                props.onSettings?.();
              }}
            >
              Sync settings…
            </button>
          )}
        </div>
      )}
    </span>
  );
}

/** A file as a link that opens it in the Lab. */
function FileLink(props: {
  path: string;
  label?: string;
  onOpen?: (path: string) => void;
}): JSX.Element {
  const { path, onOpen } = props;
  if (!onOpen) {
    return <code className="jp-ComputeServers-syncPath">{path}</code>;
  }
  return (
    <a
      href="#"
      className="jp-ComputeServers-syncOpen"
      data-path={path}
      title={`Open ${path}`}
      onClick={event => {
        event.preventDefault();
        onOpen(path);
      }}
    >
      {props.label ?? path}
    </a>
  );
}

function More(props: { shown: number; total: number; truncated?: boolean }) {
  const rest = props.total - props.shown;
  if (rest <= 0 && !props.truncated) {
    return null;
  }
  return (
    <li className="jp-ComputeServers-syncMore">
      {rest > 0 ? `and ${rest} more` : ''}
      {props.truncated ? ' (the list stops at 1000; the counts do not)' : ''}
    </li>
  );
}

/** Conflicts, files that did not sync, and what was skipped, each under its heading. */
function SummaryLists(props: {
  summary: ISyncSummary;
  onOpenFile?: (path: string) => void;
}): JSX.Element {
  const { summary, onOpenFile } = props;
  const conflicts = summary.conflicts.slice(0, LIST_LIMIT);
  const errors = summary.errors.slice(0, LIST_LIMIT);
  const skipped = summary.skipped.slice(0, LIST_LIMIT);
  return (
    <>
      {conflicts.length > 0 && (
        <div className="jp-ComputeServers-syncConflicts">
          <div className="jp-ComputeServers-syncListHeading">
            Changed on both sides:
          </div>
          <ul className="jp-ComputeServers-syncList">
            {conflicts.map(conflict => (
              <li
                key={conflict.path}
                className="jp-ComputeServers-syncConflict"
                data-path={conflict.path}
                data-resolved={conflict.resolved}
              >
                {conflict.resolved && conflict.conflict_path ? (
                  <>
                    <FileLink path={conflict.path} onOpen={onOpenFile} />{' '}
                    (yours) and{' '}
                    <FileLink
                      path={conflict.conflict_path}
                      onOpen={onOpenFile}
                    />{' '}
                    (the server&apos;s), on both sides
                  </>
                ) : (
                  <>
                    <FileLink path={conflict.path} onOpen={onOpenFile} />: not
                    copied; sync both ways to keep both versions
                  </>
                )}
              </li>
            ))}
            <More
              shown={conflicts.length}
              total={summary.conflicts.length}
              truncated={summary.truncated}
            />
          </ul>
        </div>
      )}
      {errors.length > 0 && (
        <div className="jp-ComputeServers-syncErrors" role="alert">
          <div className="jp-ComputeServers-syncListHeading">
            {FILE_ERRORS_ADVICE}
          </div>
          <ul className="jp-ComputeServers-syncList">
            {errors.map(error => (
              <li
                key={error.path}
                className="jp-ComputeServers-syncFileError"
                data-path={error.path}
              >
                <code className="jp-ComputeServers-syncPath">{error.path}</code>
                : {error.message}
              </li>
            ))}
            <More
              shown={errors.length}
              total={summary.errors.length}
              truncated={summary.truncated}
            />
          </ul>
        </div>
      )}
      {skipped.length > 0 && (
        <details className="jp-ComputeServers-syncSkipped">
          <summary>
            {summary.skipped.length} skipped (not synced on purpose)
          </summary>
          <ul className="jp-ComputeServers-syncList">
            {skipped.map(item => (
              <li
                key={`${item.side}:${item.path}`}
                className="jp-ComputeServers-syncSkippedItem"
                data-path={item.path}
              >
                <code className="jp-ComputeServers-syncPath">{item.path}</code>
                {item.side === 'remote'
                  ? ' (on the server)'
                  : item.side === 'local'
                    ? ' (in the Jupyter root)'
                    : ''}
                : {item.reason}
              </li>
            ))}
            <More
              shown={skipped.length}
              total={summary.skipped.length}
              truncated={summary.truncated}
            />
          </ul>
        </details>
      )}
    </>
  );
}

/** A sync as it runs: what it is doing, how far, how fast, how long yet; Cancel. */
function RunningSync(props: {
  run: ISyncRun;
  onCancel?: (run: ISyncRun) => void;
}): JSX.Element {
  const { run } = props;
  const fraction = progressFraction(run.progress);
  return (
    <>
      <div className="jp-ComputeServers-syncHeadline">
        <span className="jp-ComputeServers-spinner" aria-hidden="true" />{' '}
        {runHeadline(run)}
        {props.onCancel && (
          <button
            type="button"
            className="jp-ComputeServers-action jp-ComputeServers-syncCancel"
            title="Stop the sync; what was copied stays synced"
            onClick={() => props.onCancel?.(run)}
          >
            Cancel
          </button>
        )}
      </div>
      <div className="jp-ComputeServers-syncProgress" role="status">
        <span className="jp-ComputeServers-syncProgressText">
          {progressLine(run.progress)}
        </span>
        {fraction !== null && (
          <progress
            className="jp-ComputeServers-syncProgressBar"
            max={1}
            value={fraction}
          />
        )}
      </div>
    </>
  );
}

/** A sync that ended: its counts, its error and what to do, its lists. */
function EndedSync(props: {
  run: ISyncRun;
  onOpenFile?: (path: string) => void;
}): JSX.Element {
  const { run } = props;
  const summary = run.summary;
  const todo = advice(run);
  // A cancel's error says just that; the headline says it already.
  const cause =
    run.error && run.error.trim().toLowerCase() !== run.state
      ? run.error
      : null;
  const bytes = summary ? summary.sent.bytes + summary.received.bytes : 0;
  return (
    <>
      <div className="jp-ComputeServers-syncHeadline">{runHeadline(run)}</div>
      {summary && (
        <div
          className="jp-ComputeServers-syncSummary"
          title={
            bytes > 0
              ? `${formatSize(summary.sent.bytes)} sent, ${formatSize(summary.received.bytes)} received`
              : undefined
          }
        >
          {isNoop(summary) && run.state === 'completed'
            ? 'Nothing changed'
            : summaryCounts(summary).join(' · ')}
        </div>
      )}
      {summary && summary.pending ? (
        <div className="jp-ComputeServers-syncPending">
          {summary.pending} change{summary.pending === 1 ? '' : 's'} left for a
          sync the other way
        </div>
      ) : null}
      {(cause || todo) && (
        <div
          className={
            'jp-ComputeServers-syncError' +
            (run.state === 'failed' ? '' : ' jp-mod-notice')
          }
          role={run.state === 'failed' ? 'alert' : undefined}
        >
          {cause && (
            <span className="jp-ComputeServers-syncErrorCause">{cause} </span>
          )}
          {todo && <span className="jp-ComputeServers-syncAdvice">{todo}</span>}
        </div>
      )}
      {summary && (
        <SummaryLists summary={summary} onOpenFile={props.onOpenFile} />
      )}
    </>
  );
}

export interface IServerSyncProps {
  serverName: string;
  entry: IServerEntry<IServerSyncs>;
  /** Why the last start or cancel failed, or null. */
  actionError?: string | null;
  onCancel?: (run: ISyncRun) => void;
  /** Open a file of the Jupyter root (a conflict's two versions). */
  onOpenFile?: (path: string) => void;
}

/** A running server's latest sync: its progress while it runs, then its summary. */
export function ServerSync(props: IServerSyncProps): JSX.Element | null {
  const { entry, serverName, actionError } = props;
  const run = entry.value.runs[0] ?? null;
  if (!run && !actionError) {
    return null;
  }
  return (
    <div
      className="jp-ComputeServers-sync"
      aria-label={`File sync of ${serverName}`}
      data-sync-id={run?.id}
      data-state={run?.state}
    >
      {actionError && (
        <div className="jp-ComputeServers-syncError" role="alert">
          {actionError}
        </div>
      )}
      {run &&
        (run.state === 'running' ? (
          <RunningSync run={run} onCancel={props.onCancel} />
        ) : (
          <EndedSync run={run} onOpenFile={props.onOpenFile} />
        ))}
    </div>
  );
}

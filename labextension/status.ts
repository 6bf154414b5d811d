import { ServerConnection } from '@jupyterlab/services';
import { ISignal, Signal } from '@lumino/signaling';

import { ApiError, requestAPI } from './request';
import {
  IComputeServersStatus,
  IExtensionStatus,
  IStatusSnapshot
} from './tokens';
import { FRONTEND_VERSION } from './version';

/** Classify an answer (or failure) of the status endpoint. */
export function describeStatus(
  result: { status: IExtensionStatus } | { error: unknown },
  frontendVersion: string = FRONTEND_VERSION
): IStatusSnapshot {
  if ('status' in result) {
    const status = result.status;
    return {
      state: status.version === frontendVersion ? 'ok' : 'version-mismatch',
      frontendVersion,
      status,
      error: null
    };
  }
  const error = result.error;
  if (error instanceof ApiError && error.isMissingExtension) {
    return {
      state: 'missing',
      frontendVersion,
      status: null,
      error: error.message
    };
  }
  return {
    state: 'unreachable',
    frontendVersion,
    status: null,
    error: error instanceof Error ? error.message : String(error)
  };
}

/** Fetches the server extension's status and tells listeners when it changes. */
export class StatusModel implements IComputeServersStatus {
  constructor(
    private readonly serverSettings: ServerConnection.ISettings = ServerConnection.makeSettings()
  ) {}

  get snapshot(): IStatusSnapshot {
    return this._snapshot;
  }

  get changed(): ISignal<this, IStatusSnapshot> {
    return this._changed;
  }

  async refresh(): Promise<void> {
    let next: IStatusSnapshot;
    try {
      const status = await requestAPI<IExtensionStatus>(
        'status',
        {},
        this.serverSettings
      );
      next = describeStatus({ status });
    } catch (error) {
      next = describeStatus({ error });
    }
    this._snapshot = next;
    this._changed.emit(next);
  }

  private _snapshot: IStatusSnapshot = {
    state: 'loading',
    frontendVersion: FRONTEND_VERSION,
    status: null,
    error: null
  };
  private _changed = new Signal<this, IStatusSnapshot>(this);
}

import * as React from 'react';

import { formatNumber } from '../servers/format';
import { IRange } from '../servers/types';

/** One labelled input of the server dialogs, with a hint and the server's error below. */
export function Field(props: {
  name: string;
  label: string;
  hint?: React.ReactNode;
  error?: string;
  children: React.ReactNode;
}): JSX.Element {
  return (
    <div
      className={
        // Not jp-mod-error: a Dialog refuses to accept while its body holds one.
        'jp-ComputeServers-field' +
        (props.error ? ' jp-ComputeServers-fieldInvalid' : '')
      }
      data-field={props.name}
    >
      <label>
        <span className="jp-ComputeServers-fieldLabel">{props.label}</span>
        {props.children}
      </label>
      {props.hint && (
        <div className="jp-ComputeServers-fieldHint">{props.hint}</div>
      )}
      {props.error && (
        <div className="jp-ComputeServers-fieldError" role="alert">
          {props.error}
        </div>
      )}
    </div>
  );
}

/** " (1–8)" for a label, or '' without a range. */
export function rangeHint(range: IRange | undefined): string {
  return range
    ? ` (${formatNumber(range.min)}–${formatNumber(range.max)})`
    : '';
}

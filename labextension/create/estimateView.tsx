import * as React from 'react';

import {
  estimateSummary,
  formatPartPrice,
  IEstimateState,
  limitCountNote,
  unknownParts
} from './estimate';
import { ICostPart, IEstimate, IRate } from './types';

/** One state's parts: what is counted and its price (or why it is unknown). */
function RateParts(props: { title: string; rate: IRate }): JSX.Element | null {
  const parts: ICostPart[] = props.rate.parts ?? [];
  if (parts.length === 0) {
    return null;
  }
  return (
    <>
      <tr>
        <th colSpan={2}>{props.title}</th>
      </tr>
      {parts.map((part, i) => (
        <tr
          key={i}
          className={part.hourly === null ? 'jp-mod-unknown' : undefined}
          title={
            [part.source, part.as_of && `as of ${part.as_of}`, part.note]
              .filter(Boolean)
              .join(' · ') || undefined
          }
        >
          <td>
            {part.name}
            {part.detail ? ` (${part.detail})` : ''}
          </td>
          <td>{formatPartPrice(part)}</td>
        </tr>
      ))}
    </>
  );
}

function Breakdown(props: { estimate: IEstimate }): JSX.Element {
  const { rates } = props.estimate;
  return (
    <details className="jp-ComputeServers-estimateDetails">
      <summary>What it is made of</summary>
      <table>
        <tbody>
          <RateParts title="Running" rate={rates.running} />
          <RateParts title="Off" rate={rates.off} />
          {rates.suspended && (
            <RateParts title="Suspended" rate={rates.suspended} />
          )}
        </tbody>
      </table>
    </details>
  );
}

export interface IEstimateViewProps {
  state: IEstimateState;
  /** Hours running per day for the projection, as typed. */
  hoursPerDay: string;
  onHoursPerDay: (text: string) => void;
  disabled?: boolean;
}

/**
 * The live cost line of the create and edit dialogs: per hour running, off (and suspended),
 * and over 30 days at so many hours a day; "price unknown", naming the parts, whenever a part's
 * price is not known.
 */
export function EstimateView(props: IEstimateViewProps): JSX.Element {
  const { estimate, error, field, pending } = props.state;
  const shown = error === null ? estimate : null;
  const unknown = shown ? unknownParts(shown) : [];
  const limitNote = shown ? limitCountNote(shown.rates.running) : null;
  return (
    <div
      className={
        'jp-ComputeServers-estimate' + (pending ? ' jp-mod-pending' : '')
      }
      data-complete={shown ? String(unknown.length === 0) : undefined}
      aria-busy={pending}
    >
      <div className="jp-ComputeServers-estimateLine" aria-live="polite">
        <span className="jp-ComputeServers-fieldLabel">Cost</span>{' '}
        <span className="jp-ComputeServers-estimateSummary">
          {shown
            ? estimateSummary(shown)
            : error !== null
              ? field
                ? 'No estimate until the marked option is fixed.'
                : `No estimate: ${error}`
              : 'Estimating…'}
        </span>
      </div>
      {unknown.length > 0 && (
        <div className="jp-ComputeServers-estimateUnknown" role="note">
          Price unknown: {unknown.join(', ')}.
        </div>
      )}
      {limitNote && (
        <div className="jp-ComputeServers-estimateLimit" role="note">
          {limitNote}
        </div>
      )}
      <label className="jp-ComputeServers-hoursPerDay">
        Projection at{' '}
        <input
          className="jp-mod-styled"
          name="hours_per_day"
          inputMode="decimal"
          size={4}
          value={props.hoursPerDay}
          disabled={props.disabled}
          onChange={event => props.onHoursPerDay(event.target.value)}
        />{' '}
        hours running a day
      </label>
      {shown && <Breakdown estimate={shown} />}
    </div>
  );
}

/** Costs in the sidebar: each server's rates, spend, limit and coming stop; the totals. */
import * as React from 'react';

import { IServer } from '../servers/types';
import {
  budgetLine,
  comingStop,
  comingStopTitle,
  formatUsd,
  limitCountNote,
  limitLine,
  periodText,
  rateText,
  ratesLine,
  ratesTitle,
  spentLine,
  spentText,
  spentTitle,
  unknownOf
} from './format';
import { ICosts, LimitStatus } from './types';

/** A bar of spend against a limit: warning from 80%, full and red once reached. */
export function LimitBar(props: {
  /** What it measures, for tests and styles: `spend-limit`, `budget`. */
  name: string;
  label: string;
  fraction: number;
  status: LimitStatus;
  text: string;
  title?: string;
}): JSX.Element {
  const percent = Math.min(100, Math.max(0, props.fraction * 100));
  return (
    <div
      className="jp-ComputeServers-limit"
      data-limit={props.name}
      data-status={props.status}
      title={props.title}
    >
      <span className="jp-ComputeServers-limitLabel">{props.label}</span>
      <div
        className="jp-ComputeServers-limitBar"
        role="meter"
        aria-label={props.label}
        aria-valuemin={0}
        aria-valuemax={100}
        aria-valuenow={Math.round(percent)}
        aria-valuetext={props.text}
      >
        <div
          className="jp-ComputeServers-limitFill"
          data-status={props.status}
          style={{ width: `${percent}%` }}
        />
      </div>
      <span
        className="jp-ComputeServers-limitText"
        role={props.status === 'reached' ? 'alert' : undefined}
      >
        {props.text}
      </span>
    </div>
  );
}

/** Whether a server's state reason says it was stopped without being asked to. */
export function isAutomaticStop(server: IServer): boolean {
  return (
    server.state !== 'running' &&
    server.state !== 'error' &&
    /^Stopped automatically|preempted/i.test(server.state_reason ?? '')
  );
}

/**
 * A server's costs under its details: its running and off rates side by side, what it has
 * spent (today and this month; the total in the tooltip), its spend limit as a bar, when a
 * running server stops by itself ("stops at 14:32 if idle"), and why a server was stopped
 * without being asked to (a limit, the daily stop, idleness, a preemption).
 */
export function ServerCostView(props: { server: IServer }): JSX.Element | null {
  const { server } = props;
  const cost = server.cost;
  const stop = server.state === 'running' ? comingStop(server.auto_stop) : null;
  const stopped = isAutomaticStop(server);
  if (!cost && !stop && !stopped) {
    return null;
  }
  const unknown = cost ? unknownOf(cost) : [];
  const limit = cost?.spend_limit ?? null;
  const limitNote = cost ? limitCountNote(cost.rates.running) : null;
  return (
    <div className="jp-ComputeServers-costs">
      {cost && (
        <>
          <div
            className="jp-ComputeServers-rates"
            data-unknown={unknown.length > 0 || undefined}
            title={ratesTitle(cost)}
          >
            {ratesLine(cost)}
          </div>
          <div
            className="jp-ComputeServers-spent"
            title={spentTitle(cost.spent)}
          >
            {spentLine(cost.spent)}
          </div>
        </>
      )}
      {limit && (
        <LimitBar
          name="spend-limit"
          label="Limit"
          fraction={limit.fraction}
          status={limit.status}
          text={limitLine(limit)}
          title={
            `Spend limit: ${formatUsd(limit.amount)} ${periodText(limit.period_days)}; ` +
            'a warning at 80%, and reaching it stops the server.' +
            (typeof limit.reached_at === 'number' && limit.status !== 'reached'
              ? ` At the current rate it is reached on ${new Date(
                  limit.reached_at * 1000
                ).toLocaleString()}.`
              : '')
          }
        />
      )}
      {limit && limitNote && (
        <div className="jp-ComputeServers-limitNote" role="note">
          {limitNote}
        </div>
      )}
      {stop && server.auto_stop && (
        <div
          className="jp-ComputeServers-autoStop"
          data-kind={stop.kind}
          title={comingStopTitle(server.auto_stop)}
        >
          {stop.text}
        </div>
      )}
      {stopped && (
        <div className="jp-ComputeServers-stopReason">
          {server.state_reason}
        </div>
      )}
    </div>
  );
}

/**
 * All servers together: what they cost per hour now and have cost this month, and the
 * monthly budget as a bar (when one is set).
 */
export function CostsTotal(props: {
  costs: ICosts | null;
  error?: string | null;
}): JSX.Element | null {
  const { costs, error } = props;
  if (!costs) {
    return error ? (
      <div className="jp-ComputeServers-costsTotal">
        <span className="jp-ComputeServers-costsError">
          Could not read the costs: {error}
        </span>
      </div>
    ) : null;
  }
  const budget = costs.budget;
  return (
    <div
      className="jp-ComputeServers-costsTotal"
      aria-label="All servers' costs"
    >
      <div
        className="jp-ComputeServers-costsTotalLine"
        title={`${spentTitle(costs.spent)}\n(deleted servers included; today and this month in ${costs.timezone})`}
      >
        All servers: {rateText(costs.hourly)} now ·{' '}
        {spentText(costs.spent.month, costs.spent)} this month
      </div>
      {budget && (
        <LimitBar
          name="budget"
          label="Budget"
          fraction={budget.fraction}
          status={budget.status}
          text={budgetLine(budget)}
          title={`Monthly budget across all servers: ${formatUsd(
            budget.monthly
          )}; a warning at ${Math.round(
            budget.warning_fraction * 100
          )}%, and reaching it stops the servers that cost money.`}
        />
      )}
      {error && (
        <div className="jp-ComputeServers-costsError" title={error}>
          The figures may be out of date: {error}
        </div>
      )}
    </div>
  );
}

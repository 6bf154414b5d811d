/**
 * The shapes of what the server extension says about costs: a server's `cost` and
 * `auto_stop` (in `GET servers` and `GET servers/{id}`) and `GET compute-servers/api/costs`:
 * names for `ServerCost`, `AutoStop` and `Costs` of openapi.json, from the generated types.
 */
import { components } from '../api/schema';

type Schemas = components['schemas'];

/** Dollars spent; `unknown` names parts whose price was unknown for a while (lower bounds). */
export type ISpent = Schemas['Spent'];

/** A server's `cost` (null only if it could not be worked out). */
export type IServerCost = NonNullable<Schemas['ServerCost']>;

/** A server's spend limit and how far it is. */
export type ISpendLimitStatus = NonNullable<IServerCost['spend_limit']>;

/** ok; warning from the warning fraction (80%); reached: stopped, and it cannot start. */
export type LimitStatus = ISpendLimitStatus['status'];

/** When a running server will stop by itself. */
export type IAutoStop = NonNullable<Schemas['AutoStop']>;

/** What `GET compute-servers/api/costs` answers. */
export type ICosts = Schemas['Costs'];

/** The monthly budget across all servers. */
export type IBudget = NonNullable<ICosts['budget']>;

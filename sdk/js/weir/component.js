// Inside a component: route the `weir` package's state, config and log
// calls to the host's `weir:handler` imports. `weir build` generates the
// component's entry module, which imports this file first and then
// re-exports the handler module's `guest`; native tests never load it
// (node cannot resolve `weir:` specifiers).

import * as config from 'weir:handler/config@0.1.0';
import * as log from 'weir:handler/log@0.1.0';
import * as state from 'weir:handler/state@0.1.0';

import { useHost } from './backend.js';

useHost({ state, log, config });

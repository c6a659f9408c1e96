"""The outbound dialer: campaigns, leads and their life cycle, pacing (pure), compliance (calling
hours in the callee's zone, DNC, the abandonment ledger) and the runner that places calls
through ``CallControl`` and hands answered humans to the campaign queue's agents."""

//! Approvals: calls waiting for a person, and what the person decided. Every change of state is
//! one conditional `UPDATE`, so a decision lands once (a replayed approval does nothing) and an
//! approval for one call is used once.

use sqlx::Row as _;
use sqlx::sqlite::SqliteRow;

use crate::{Store, StoreError};

/// Where an approval stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApprovalState {
    /// Waiting for a person.
    Pending,
    /// Approved, not yet used (or, with a grant, usable until it ends).
    Approved,
    /// Refused.
    Denied,
    /// Nobody decided in time.
    Expired,
    /// Approved and used by its call.
    Used,
}

impl ApprovalState {
    /// Its name in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalState::Pending => "pending",
            ApprovalState::Approved => "approved",
            ApprovalState::Denied => "denied",
            ApprovalState::Expired => "expired",
            ApprovalState::Used => "used",
        }
    }

    fn parse(s: &str) -> Option<ApprovalState> {
        Some(match s {
            "pending" => ApprovalState::Pending,
            "approved" => ApprovalState::Approved,
            "denied" => ApprovalState::Denied,
            "expired" => ApprovalState::Expired,
            "used" => ApprovalState::Used,
            _ => return None,
        })
    }
}

/// One approval.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Approval {
    /// Its id (what `portcullis approve` takes).
    pub id: String,
    /// Who made the call.
    pub principal: String,
    /// With which client.
    pub client: String,
    /// The upstream.
    pub upstream: String,
    /// The tool, by its name at the upstream.
    pub tool: String,
    /// The arguments as recorded (secrets scrubbed, long values digested), JSON.
    pub arguments: String,
    /// What identifies the call.
    pub call_digest: String,
    /// Why it needs approval.
    pub reason: String,
    /// When asked, ms since the epoch.
    pub created_ms: i64,
    /// When a pending approval expires.
    pub expires_ms: i64,
    /// Where it stands.
    pub state: ApprovalState,
    /// Who decided.
    pub decided_by: Option<String>,
    /// When.
    pub decided_ms: Option<i64>,
    /// The decider's note (a denial's reason).
    pub note: Option<String>,
    /// For an approval of this call for a while: until when.
    pub grant_until_ms: Option<i64>,
    /// Only an operator (terminal, admin page) may decide it, never a client.
    pub operator_only: bool,
    /// The session the call waits in (its pending approvals expire when it ends).
    pub session: String,
    /// The arguments in full (secrets scrubbed), JSON, for the person who decides.
    pub arguments_full: String,
}

/// The columns, in order (a macro so queries stay literal strings).
macro_rules! columns {
    () => {
        "id, principal, client, upstream, tool, arguments, call_digest, reason, created_ms, expires_ms, state, decided_by, decided_ms, note, grant_until_ms, operator_only, session, arguments_full"
    };
}

fn approval(row: &SqliteRow) -> Result<Approval, sqlx::Error> {
    let state: String = row.try_get("state")?;
    Ok(Approval {
        id: row.try_get("id")?,
        principal: row.try_get("principal")?,
        client: row.try_get("client")?,
        upstream: row.try_get("upstream")?,
        tool: row.try_get("tool")?,
        arguments: row.try_get("arguments")?,
        call_digest: row.try_get("call_digest")?,
        reason: row.try_get("reason")?,
        created_ms: row.try_get("created_ms")?,
        expires_ms: row.try_get("expires_ms")?,
        state: ApprovalState::parse(&state)
            .ok_or_else(|| sqlx::Error::Decode(format!("approval state `{state}`").into()))?,
        decided_by: row.try_get("decided_by")?,
        decided_ms: row.try_get("decided_ms")?,
        note: row.try_get("note")?,
        grant_until_ms: row.try_get("grant_until_ms")?,
        operator_only: row.try_get::<i64, _>("operator_only")? != 0,
        session: row.try_get("session")?,
        arguments_full: row.try_get("arguments_full")?,
    })
}

impl Store {
    /// Stores a new pending approval.
    pub async fn create_approval(&self, a: &Approval) -> Result<(), StoreError> {
        sqlx::query(concat!(
            "INSERT INTO approvals (",
            columns!(),
            ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        ))
        .bind(&a.id)
        .bind(&a.principal)
        .bind(&a.client)
        .bind(&a.upstream)
        .bind(&a.tool)
        .bind(&a.arguments)
        .bind(&a.call_digest)
        .bind(&a.reason)
        .bind(a.created_ms)
        .bind(a.expires_ms)
        .bind(a.state.as_str())
        .bind(&a.decided_by)
        .bind(a.decided_ms)
        .bind(&a.note)
        .bind(a.grant_until_ms)
        .bind(i64::from(a.operator_only))
        .bind(&a.session)
        .bind(&a.arguments_full)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// One approval.
    pub async fn approval(&self, id: &str) -> Result<Option<Approval>, StoreError> {
        let row = sqlx::query(concat!("SELECT ", columns!(), " FROM approvals WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(approval).transpose()?)
    }

    /// Approvals in `state` (all when `None`), newest first, at most `limit`.
    pub async fn approvals(&self, state: Option<ApprovalState>, limit: i64) -> Result<Vec<Approval>, StoreError> {
        let rows = match state {
            Some(s) => {
                sqlx::query(concat!(
                    "SELECT ",
                    columns!(),
                    " FROM approvals WHERE state = ? ORDER BY created_ms DESC LIMIT ?"
                ))
                .bind(s.as_str())
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(concat!(
                    "SELECT ",
                    columns!(),
                    " FROM approvals ORDER BY created_ms DESC LIMIT ?"
                ))
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
            }
        };
        Ok(rows.iter().map(approval).collect::<Result<_, _>>()?)
    }

    /// Decides a pending, unexpired approval as an operator (a terminal, the admin page):
    /// approve (optionally for the same call until `grant_until_ms`) or deny. Only the first
    /// decision lands; returns whether this one did.
    pub async fn decide_approval(
        &self,
        id: &str,
        approve: bool,
        by: &str,
        note: Option<&str>,
        grant_until_ms: Option<i64>,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        self.decide(id, approve, by, note, grant_until_ms, now_ms, true).await
    }

    /// Decides a pending approval from a client's answer (its person, through elicitation):
    /// never one reserved for an operator.
    pub async fn decide_approval_in_client(
        &self,
        id: &str,
        approve: bool,
        by: &str,
        note: Option<&str>,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        self.decide(id, approve, by, note, None, now_ms, false).await
    }

    /// Ends the pending approvals of a session that ended: nobody waits on them any more.
    pub async fn expire_session_approvals(&self, session: &str, now_ms: i64) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "UPDATE approvals SET state = 'expired', decided_ms = ? WHERE session = ? AND session != '' AND state = 'pending' RETURNING id",
        )
        .bind(now_ms)
        .bind(session)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| r.try_get("id").map_err(StoreError::from)).collect()
    }

    #[expect(clippy::too_many_arguments, reason = "one decision's parts")]
    async fn decide(
        &self,
        id: &str,
        approve: bool,
        by: &str,
        note: Option<&str>,
        grant_until_ms: Option<i64>,
        now_ms: i64,
        operator: bool,
    ) -> Result<bool, StoreError> {
        let state = if approve {
            ApprovalState::Approved
        } else {
            ApprovalState::Denied
        };
        let r = sqlx::query(
            "UPDATE approvals SET state = ?, decided_by = ?, decided_ms = ?, note = ?, grant_until_ms = ?
             WHERE id = ? AND state = 'pending' AND expires_ms > ? AND (operator_only = 0 OR ? = 1)",
        )
        .bind(state.as_str())
        .bind(by)
        .bind(now_ms)
        .bind(note)
        .bind(if approve { grant_until_ms } else { None })
        .bind(id)
        .bind(now_ms)
        .bind(i64::from(operator))
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Marks a pending approval expired; whether it was still pending.
    pub async fn expire_approval(&self, id: &str, now_ms: i64) -> Result<bool, StoreError> {
        let r =
            sqlx::query("UPDATE approvals SET state = 'expired', decided_ms = ? WHERE id = ? AND state = 'pending'")
                .bind(now_ms)
                .bind(id)
                .execute(&self.pool)
                .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Uses an approval for its call: a one-call approval becomes `used` (exactly once; `false`
    /// if it was used already); an approval with a grant stays, while the grant lasts.
    pub async fn use_approval(&self, id: &str, now_ms: i64) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE approvals SET state = CASE WHEN grant_until_ms IS NULL THEN 'used' ELSE state END
             WHERE id = ? AND state = 'approved' AND (grant_until_ms IS NULL OR grant_until_ms > ?)",
        )
        .bind(id)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// The approval this call can go ahead on, used at once: a lasting grant for the same
    /// call, or an approved one-call approval not used yet (approved while the call waited,
    /// or after a restart took the waiting call away).
    pub async fn take_approval_for(&self, call_digest: &str, now_ms: i64) -> Result<Option<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT id FROM approvals WHERE call_digest = ? AND state = 'approved'
             AND (grant_until_ms IS NULL OR grant_until_ms > ?) ORDER BY created_ms",
        )
        .bind(call_digest)
        .bind(now_ms)
        .fetch_all(&self.pool)
        .await?;
        for r in rows {
            let id: String = r.try_get("id")?;
            if self.use_approval(&id, now_ms).await? {
                return Ok(Some(id));
            }
        }
        Ok(None)
    }

    /// A pending, unexpired approval for this call, if one is waiting already.
    pub async fn pending_approval_for(&self, call_digest: &str, now_ms: i64) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(
            "SELECT id FROM approvals WHERE call_digest = ? AND state = 'pending' AND expires_ms > ?
             ORDER BY created_ms LIMIT 1",
        )
        .bind(call_digest)
        .bind(now_ms)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| r.try_get("id")).transpose()?)
    }

    /// How many approvals are pending and unexpired.
    pub async fn pending_approvals(&self, now_ms: i64) -> Result<i64, StoreError> {
        Ok(
            sqlx::query("SELECT COUNT(*) AS n FROM approvals WHERE state = 'pending' AND expires_ms > ?")
                .bind(now_ms)
                .fetch_one(&self.pool)
                .await?
                .try_get("n")?,
        )
    }
}

// The BI path end to end: the PostgreSQL JDBC driver (what Metabase and Tableau use) against the
// metric functions and views, on the hand-counted history of tests/jdbc/setup.sql (the numbers of
// tests/pg_regress/expected/metrics.out).
//
//   javac -d target/jdbc -cp /usr/share/java/postgresql.jar tests/jdbc/MetricsJdbcTest.java
//   java -cp target/jdbc:/usr/share/java/postgresql.jar MetricsJdbcTest jdbc:postgresql://127.0.0.1:28815/smslink_jdbc?user=postgres
//
// Every call goes through a PreparedStatement with bound parameters. Prints one line per check
// ("ok ..." or "FAIL ...") and exits 1 if any check failed.

import java.math.BigDecimal;
import java.sql.Array;
import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.ResultSetMetaData;
import java.sql.SQLException;
import java.sql.Types;
import java.time.LocalDate;
import java.time.OffsetDateTime;
import java.time.ZoneOffset;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Pattern;
import org.postgresql.util.PGInterval;

public class MetricsJdbcTest {
    static int passed = 0;
    static int failed = 0;

    static void check(String name, boolean ok, String detail) {
        if (ok) {
            passed++;
            System.out.println("ok   " + name);
        } else {
            failed++;
            System.out.println("FAIL " + name + (detail.isEmpty() ? "" : ": " + detail));
        }
    }

    // ---- expected values -------------------------------------------------------------------

    /** An interval, compared by its length in seconds. */
    record Secs(double seconds) {
        public String toString() { return seconds + " s"; }
    }

    static BigDecimal num(String s) { return new BigDecimal(s); }

    /** Compares one value as JDBC returns it (getObject) with the expected one, type included. */
    static String mismatch(Object got, Object want) {
        if (want == null) return got == null ? null : "got " + got + ", want NULL";
        if (got == null) return "got NULL, want " + want;
        if (want instanceof Long w) {
            return got instanceof Long g && g.longValue() == w ? null : "got " + describe(got) + ", want " + w + " (Long)";
        } else if (want instanceof Integer w) {
            return got instanceof Integer g && g.intValue() == w ? null : "got " + describe(got) + ", want " + w + " (Integer)";
        } else if (want instanceof Double w) {
            return got instanceof Double g && Math.abs(g - w) <= 1e-9 ? null : "got " + describe(got) + ", want " + w + " (Double, ±1e-9)";
        } else if (want instanceof BigDecimal w) {
            return got instanceof BigDecimal g && g.compareTo(w) == 0 ? null : "got " + describe(got) + ", want " + w.toPlainString() + " (BigDecimal)";
        } else if (want instanceof LocalDate w) {
            return got instanceof java.sql.Date g && g.toLocalDate().equals(w) ? null : "got " + describe(got) + ", want " + w + " (date)";
        } else if (want instanceof Secs w) {
            if (!(got instanceof PGInterval g)) return "got " + describe(got) + ", want an interval of " + w;
            double s = ((g.getYears() * 12.0 + g.getMonths()) * 30 + g.getDays()) * 86400.0
                    + g.getHours() * 3600.0 + g.getMinutes() * 60.0 + g.getSeconds();
            return Math.abs(s - w.seconds()) <= 1e-6 ? null : "got interval " + g.getValue() + " (" + s + " s), want " + w;
        } else if (want instanceof Pattern w) {
            return got instanceof String g && w.matcher(g).matches() ? null : "got " + describe(got) + ", want /" + w + "/";
        } else {
            return got.equals(want) ? null : "got " + describe(got) + ", want " + want + " (" + want.getClass().getSimpleName() + ")";
        }
    }

    static String describe(Object o) { return o == null ? "NULL" : "'" + o + "' (" + o.getClass().getSimpleName() + ")"; }

    // ---- running statements --------------------------------------------------------------

    interface Binder { void bind(PreparedStatement ps) throws SQLException; }

    /** A result: column metadata (from the prepared statement's describe) and rows by column name. */
    record Result(List<String> names, List<String> typeNames, List<Integer> types, List<Map<String, Object>> rows) {}

    static Connection conn;

    /**
     * Describes the statement (as a BI tool does before running it), checks its columns against
     * spec ("name:typename" each), then runs it. Returns null, after a FAIL line, if it fails.
     */
    static Result run(String what, String sql, Binder binder, String[] spec) {
        try (PreparedStatement ps = conn.prepareStatement(sql)) {
            binder.bind(ps);
            if (spec != null) checkColumns(what + " columns", ps.getMetaData(), spec);
            try (ResultSet rs = ps.executeQuery()) {
                ResultSetMetaData md = rs.getMetaData();
                List<String> names = new ArrayList<>();
                List<String> typeNames = new ArrayList<>();
                List<Integer> types = new ArrayList<>();
                for (int i = 1; i <= md.getColumnCount(); i++) {
                    names.add(md.getColumnLabel(i));
                    typeNames.add(md.getColumnTypeName(i));
                    types.add(md.getColumnType(i));
                }
                List<Map<String, Object>> rows = new ArrayList<>();
                while (rs.next()) {
                    Map<String, Object> row = new LinkedHashMap<>();
                    for (int i = 1; i <= names.size(); i++) row.put(names.get(i - 1), rs.getObject(i));
                    rows.add(row);
                }
                return new Result(names, typeNames, types, rows);
            }
        } catch (SQLException e) {
            check(what + " runs", false, "SQLState " + e.getSQLState() + ": " + firstLine(e.getMessage()));
            return null;
        }
    }

    static String firstLine(String s) { return s == null ? "" : s.split("\n", 2)[0]; }

    static final Map<String, Integer> JDBC_TYPES = Map.of(
            "int8", Types.BIGINT, "int4", Types.INTEGER, "float8", Types.DOUBLE, "numeric", Types.NUMERIC,
            "text", Types.VARCHAR, "bool", Types.BIT, "date", Types.DATE, "interval", Types.OTHER,
            "timestamptz", Types.TIMESTAMP);

    /** Exact column names, type names (getColumnTypeName) and java.sql.Types (getColumnType). */
    static void checkColumns(String what, ResultSetMetaData md, String[] spec) throws SQLException {
        List<String> problems = new ArrayList<>();
        if (md == null) {
            check(what, false, "no result set metadata");
            return;
        }
        int n = md.getColumnCount();
        if (n != spec.length) problems.add(n + " columns, want " + spec.length);
        for (int i = 0; i < Math.min(n, spec.length); i++) {
            String[] nt = spec[i].split(":");
            String name = md.getColumnLabel(i + 1), typeName = md.getColumnTypeName(i + 1);
            int type = md.getColumnType(i + 1);
            if (!name.equals(nt[0])) problems.add("column " + (i + 1) + " is " + name + ", want " + nt[0]);
            if (!typeName.equals(nt[1])) problems.add(nt[0] + " type name " + typeName + ", want " + nt[1]);
            if (type != JDBC_TYPES.get(nt[1])) problems.add(nt[0] + " java.sql.Types " + type + ", want " + JDBC_TYPES.get(nt[1]));
        }
        check(what + " (" + n + ": names, type names, java.sql.Types)", problems.isEmpty(), String.join("; ", problems));
    }

    /** Checks the rows' count and, row by row, the given columns' values. */
    static void checkRows(String what, Result r, List<Object[]> want) {
        if (r == null) {
            check(what, false, "no result (the query failed)");
            return;
        }
        List<String> problems = new ArrayList<>();
        if (r.rows().size() != want.size()) problems.add(r.rows().size() + " rows, want " + want.size());
        for (int i = 0; i < Math.min(r.rows().size(), want.size()); i++) {
            Map<String, Object> row = r.rows().get(i);
            Object[] kv = want.get(i);
            for (int j = 0; j < kv.length; j += 2) {
                String col = (String) kv[j];
                if (!row.containsKey(col)) {
                    problems.add("row " + (i + 1) + ": no column " + col);
                    continue;
                }
                String m = mismatch(row.get(col), kv[j + 1]);
                if (m != null) problems.add("row " + (i + 1) + " " + col + ": " + m);
            }
        }
        int values = want.stream().mapToInt(kv -> kv.length / 2).sum();
        check(what + " (" + want.size() + " rows, " + values + " values)", problems.isEmpty(), String.join("; ", problems));
    }

    static void expectError(String what, String sql, Binder binder, String sqlState) {
        try (PreparedStatement ps = conn.prepareStatement(sql)) {
            binder.bind(ps);
            try (ResultSet rs = ps.executeQuery()) {
                check(what, false, "no error, want SQLState " + sqlState);
            }
        } catch (SQLException e) {
            check(what + " -> SQLState " + sqlState, sqlState.equals(e.getSQLState()),
                    "got SQLState " + e.getSQLState() + ": " + firstLine(e.getMessage()));
        }
    }

    static long scalar(String sql, String arg) throws SQLException {
        try (PreparedStatement ps = conn.prepareStatement(sql)) {
            ps.setString(1, arg);
            try (ResultSet rs = ps.executeQuery()) {
                if (!rs.next()) throw new SQLException("no row for " + arg + " in: " + sql);
                return rs.getLong(1);
            }
        }
    }

    static Object[] kv(Object... kv) { return kv; }

    static List<Object[]> rows(Object[]... rows) { return List.of(rows); }

    // ---- the columns -------------------------------------------------------------------------

    static final String[] CORE = {
        "sent:int8", "delivered:int8", "failed:int8", "delivery_rate:float8", "unique_clicks:int8",
        "total_clicks:int8", "ctr:float8", "repeat_click_rate:float8", "clickers_converted:int8", "ctcr:float8",
        "conversions:float8", "revenue:numeric", "rpm:numeric", "opt_outs:int8", "opt_out_rate:float8",
        "human_hits:int8", "preview_hits:int8", "bot_hits:int8", "scanner_hits:int8", "suspect_hits:int8",
        "bot_share:float8", "ttc_p50_seconds:float8", "ttc_p90_seconds:float8"};

    static String[] cols(String[] head, String[] tail) {
        String[] all = new String[head.length + tail.length];
        System.arraycopy(head, 0, all, 0, head.length);
        System.arraycopy(tail, 0, all, head.length, tail.length);
        return all;
    }

    static final String[] CAMPAIGN = cols(new String[] {"campaign_id:int8", "campaign:text"}, CORE);
    static final String[] VARIANT = cols(new String[] {"variant_id:int8", "variant:text"}, CORE);
    static final String[] KEYED = cols(new String[] {"key:text"}, CORE);
    static final String[] VARIANT_REPORT =
            cols(new String[] {"campaign_id:int8", "campaign:text", "variant_id:int8", "variant:text"}, CORE);
    static final String[] LINK = {
        "position:int4", "kind:text", "destination:text", "messages:int8", "delivered:int8", "unique_clicks:int8",
        "total_clicks:int8", "ctr:float8", "hits:int8", "bot_share:float8", "counts_as_engagement:bool"};
    static final String[] TTC = {
        "bucket_start:interval", "bucket_end:interval", "clicks:int8", "share:float8", "cumulative_share:float8"};
    static final String[] DAILY = {
        "day:date", "sent:int8", "delivered:int8", "delivery_rate:float8", "unique_clicks:int8",
        "total_clicks:int8", "ctr:float8", "conversions:float8", "revenue:numeric", "opt_outs:int8",
        "bot_share:float8"};
    static final String[] ANOMALIES = {
        "kind:text", "subject:text", "observed:float8", "expected:float8", "message:text"};

    static final String[] VARIANT_STATS = {
        "variant:text", "n:int8", "successes:int8", "rate:float8", "ci_low:float8", "ci_high:float8",
        "lift:float8", "lift_ci_low:float8", "lift_ci_high:float8", "rel_lift:float8", "rel_lift_ci_low:float8",
        "rel_lift_ci_high:float8", "p_value:float8", "chi2_p_value:float8", "prob_best:float8",
        "always_valid_p:float8", "cs_low:float8", "cs_high:float8", "decision:text"};
    static final String[] INCREMENTALITY = {
        "treatment_n:int8", "control_n:int8", "treatment_converted:int8", "control_converted:int8",
        "treatment_rate:float8", "control_rate:float8", "lift:float8", "lift_ci_low:float8", "lift_ci_high:float8",
        "rel_lift:float8", "rel_lift_ci_low:float8", "rel_lift_ci_high:float8", "p_value:float8",
        "incremental_conversions:float8", "incremental_ci_low:float8", "incremental_ci_high:float8",
        "treatment_revenue_per_recipient:float8", "control_revenue_per_recipient:float8", "revenue_diff:float8",
        "revenue_ci_low:float8", "revenue_ci_high:float8", "revenue_p_value:float8", "incremental_revenue:float8",
        "mde:float8", "mde_relative:float8", "window_ends:timestamptz", "decision:text"};

    static OffsetDateTime utc(int y, int mo, int d, int h) { return OffsetDateTime.of(y, mo, d, h, 0, 0, 0, ZoneOffset.UTC); }

    public static void main(String[] args) throws Exception {
        if (args.length != 1) {
            System.err.println("usage: MetricsJdbcTest jdbc:postgresql://127.0.0.1:PORT/DB?user=postgres");
            System.exit(2);
        }
        conn = DriverManager.getConnection(args[0]);
        DatabaseMetaData dbmd = conn.getMetaData();
        System.out.println("connected: " + dbmd.getDatabaseProductName() + " " + dbmd.getDatabaseProductVersion()
                + " with " + dbmd.getDriverName() + " " + dbmd.getDriverVersion());

        long b = scalar("SELECT id FROM smslink.brand WHERE name = ?", "Metrics Co");
        long c1 = scalar("SELECT id FROM smslink.campaign WHERE name = ?", "M1");
        long c2 = scalar("SELECT id FROM smslink.campaign WHERE name = ?", "M2");
        long c3 = scalar("SELECT id FROM smslink.campaign WHERE name = ?", "Silent");
        long vA = scalar("SELECT v.id FROM smslink.variant v JOIN smslink.campaign c ON c.id = v.campaign_id WHERE c.name = 'M1' AND v.key = ?", "A");
        long vB = scalar("SELECT v.id FROM smslink.variant v JOIN smslink.campaign c ON c.id = v.campaign_id WHERE c.name = 'M1' AND v.key = ?", "B");
        Array both = conn.createArrayOf("bigint", new Long[] {c1, c2});
        Array onlyM1 = conn.createArrayOf("bigint", new Long[] {c1});

        // M1 and M2 by hand (tests/pg_regress/sql/metrics.sql explains every number).
        Object[] m1 = kv("campaign_id", c1, "campaign", "M1", "sent", 9L, "delivered", 8L, "failed", 1L,
                "delivery_rate", 8.0 / 9, "unique_clicks", 4L, "total_clicks", 5L, "ctr", 0.5, "repeat_click_rate", 1.25,
                "clickers_converted", 1L, "ctcr", 0.25, "conversions", 1.0, "revenue", num("30"), "rpm", num("3.75"),
                "opt_outs", 1L, "opt_out_rate", 0.125, "human_hits", 6L, "preview_hits", 1L, "bot_hits", 1L,
                "scanner_hits", 0L, "suspect_hits", 0L, "bot_share", 0.25, "ttc_p50_seconds", 600.0,
                "ttc_p90_seconds", 1530.0);
        Object[] m2 = kv("campaign_id", c2, "campaign", "M2", "sent", 1L, "delivered", 1L, "failed", 0L,
                "delivery_rate", 1.0, "unique_clicks", 1L, "total_clicks", 1L, "ctr", 1.0, "repeat_click_rate", 1.0,
                "clickers_converted", 1L, "ctcr", 1.0, "conversions", 1.0, "revenue", num("100"), "rpm", num("100"),
                "opt_outs", 0L, "opt_out_rate", 0.0, "human_hits", 1L, "preview_hits", 0L, "bot_hits", 0L,
                "scanner_hits", 0L, "suspect_hits", 0L, "bot_share", 0.0, "ttc_p50_seconds", 1200.0,
                "ttc_p90_seconds", 1200.0);
        // Per variant of M1. A: a1 (2 clicks at 120 s), a2 (preview, then a click at 1800 s), a3 (a bot
        // hit), a4 (an opt-out tap, then the opt-out), a9 failed. B: b1 (300 s), b2 (900 s, then the
        // $30 purchase), b3, b4, and b9 never sent.
        Object[] varA = kv("variant", "A", "sent", 5L, "delivered", 4L, "failed", 1L, "delivery_rate", 0.8,
                "unique_clicks", 2L, "total_clicks", 3L, "ctr", 0.5, "repeat_click_rate", 1.5, "clickers_converted", 0L,
                "ctcr", 0.0, "conversions", 0.0, "revenue", num("0"), "rpm", num("0"), "opt_outs", 1L,
                "opt_out_rate", 0.25, "human_hits", 4L, "preview_hits", 1L, "bot_hits", 1L, "bot_share", 2.0 / 6,
                "ttc_p50_seconds", 960.0, "ttc_p90_seconds", 1632.0);
        Object[] varB = kv("variant", "B", "sent", 4L, "delivered", 4L, "failed", 0L, "delivery_rate", 1.0,
                "unique_clicks", 2L, "total_clicks", 2L, "ctr", 0.5, "repeat_click_rate", 1.0, "clickers_converted", 1L,
                "ctcr", 0.5, "conversions", 1.0, "revenue", num("30"), "rpm", num("7.5"), "opt_outs", 0L,
                "opt_out_rate", 0.0, "human_hits", 2L, "preview_hits", 0L, "bot_hits", 0L, "bot_share", 0.0,
                "ttc_p50_seconds", 600.0, "ttc_p90_seconds", 840.0);

        // campaign_metrics
        Result r = run("campaign_metrics", "SELECT * FROM smslink.campaign_metrics(?)",
                ps -> ps.setArray(1, both), CAMPAIGN);
        checkRows("campaign_metrics(ARRAY[M1, M2]): M1 and M2 by hand", r, rows(m1, m2));
        r = run("campaign_metrics include_classes", "SELECT * FROM smslink.campaign_metrics(?, include_classes => ?)",
                ps -> { ps.setArray(1, onlyM1); ps.setArray(2, conn.createArrayOf("text", new String[] {"human", "preview"})); }, null);
        checkRows("campaign_metrics(include_classes {human,preview}): a2's preview adds a click", r,
                rows(kv("unique_clicks", 4L, "total_clicks", 6L, "preview_hits", 1L)));
        r = run("campaign_metrics range", "SELECT * FROM smslink.campaign_metrics(?, ?, ?)",
                ps -> { ps.setArray(1, onlyM1); ps.setObject(2, utc(2026, 2, 10, 23)); ps.setObject(3, utc(2026, 2, 11, 0)); }, null);
        checkRows("campaign_metrics(from_ts, to_ts as OffsetDateTime): B's sends only", r,
                rows(kv("sent", 4L, "delivered", 4L, "unique_clicks", 2L)));
        r = run("campaign_metrics last_click", "SELECT * FROM smslink.campaign_metrics(?, attribution_model => ?, click_window => ?::interval)",
                ps -> { ps.setArray(1, onlyM1); ps.setString(2, "last_click"); ps.setString(3, "7 days"); }, null);
        checkRows("campaign_metrics(last_click, '7 days'::interval): b1's purchase credited too", r,
                rows(kv("conversions", 2.0, "revenue", num("80"), "clickers_converted", 2L, "rpm", num("10"))));

        // variant_metrics
        r = run("variant_metrics", "SELECT * FROM smslink.variant_metrics(?)", ps -> ps.setLong(1, c1), VARIANT);
        Object[] idA = kv("variant_id", vA), idB = kv("variant_id", vB);
        checkRows("variant_metrics(M1): A and B by hand", r, rows(concat(idA, varA), concat(idB, varB)));

        // metrics_by
        r = run("metrics_by", "SELECT * FROM smslink.metrics_by(?, ?, time_zone => ?)",
                ps -> { ps.setString(1, "campaign"); ps.setArray(2, both); ps.setString(3, "UTC"); }, KEYED);
        checkRows("metrics_by('campaign', ARRAY[M1, M2])", r, rows(
                kv("key", String.valueOf(c1), "sent", 9L, "delivered", 8L, "unique_clicks", 4L, "ctr", 0.5,
                   "revenue", num("30"), "rpm", num("3.75"), "ttc_p50_seconds", 600.0, "ttc_p90_seconds", 1530.0),
                kv("key", String.valueOf(c2), "sent", 1L, "delivered", 1L, "unique_clicks", 1L, "ctr", 1.0,
                   "revenue", num("100"), "rpm", num("100"))));

        // breakdown
        r = run("breakdown", "SELECT * FROM smslink.breakdown(?, ?, ?)",
                ps -> { ps.setLong(1, c1); ps.setString(2, "hour_of_day"); ps.setString(3, "Europe/Berlin"); }, KEYED);
        checkRows("breakdown(M1, 'hour_of_day', 'Europe/Berlin'): B at 00 h, A at 10 h", r, rows(
                kv("key", "00", "sent", 4L, "delivered", 4L, "unique_clicks", 2L, "ctr", 0.5),
                kv("key", "10", "sent", 5L, "delivered", 4L, "unique_clicks", 2L, "ctr", 0.5)));
        r = run("breakdown device", "SELECT * FROM smslink.breakdown(?, ?)",
                ps -> { ps.setLong(1, c1); ps.setString(2, "device"); }, null);
        checkRows("breakdown(M1, 'device'): clicks against all 8 delivered", r, rows(
                kv("key", "desktop", "delivered", 8L, "unique_clicks", 1L, "total_clicks", 1L, "ctr", 0.125, "conversions", 0.0),
                kv("key", "mobile", "delivered", 8L, "unique_clicks", 2L, "total_clicks", 3L, "ctr", 0.25, "conversions", 1.0),
                kv("key", "other", "delivered", 8L, "unique_clicks", 0L, "total_clicks", 0L, "ctr", 0.0, "conversions", 0.0),
                kv("key", "tablet", "delivered", 8L, "unique_clicks", 1L, "total_clicks", 1L, "ctr", 0.125, "conversions", 0.0)));
        r = run("breakdown variant", "SELECT * FROM smslink.breakdown(?, ?)",
                ps -> { ps.setLong(1, c1); ps.setString(2, "variant"); }, null);
        checkRows("breakdown(M1, 'variant'): A and B by hand", r,
                rows(concat(kv("key", "A"), drop(varA, "variant")), concat(kv("key", "B"), drop(varB, "variant"))));

        // link_metrics
        r = run("link_metrics", "SELECT * FROM smslink.link_metrics(?)", ps -> ps.setLong(1, c1), LINK);
        checkRows("link_metrics(M1): the CTA, and the opt-out link apart", r, rows(
                kv("position", 1, "kind", "cta", "destination", "https://shop.example/m1", "messages", 10L, "delivered", 8L,
                   "unique_clicks", 4L, "total_clicks", 5L, "ctr", 0.5, "hits", 7L, "bot_share", 2.0 / 7,
                   "counts_as_engagement", true),
                kv("position", 2, "kind", "optout", "destination", "https://shop.example/stop", "messages", 10L, "delivered", 8L,
                   "unique_clicks", 1L, "total_clicks", 1L, "ctr", 0.125, "hits", 1L, "bot_share", 0.0,
                   "counts_as_engagement", false)));

        // time_to_click: first clicks after 120, 300, 900 and 1800 s, in 5-minute buckets up to an hour.
        r = run("time_to_click", "SELECT * FROM smslink.time_to_click(?, ?::interval, ?::interval)",
                ps -> { ps.setLong(1, c1); ps.setString(2, "5 minutes"); ps.setString(3, "1 hour"); }, TTC);
        long[] counts = {1, 1, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0};
        List<Object[]> buckets = new ArrayList<>();
        long cum = 0;
        for (int g = 0; g < counts.length; g++) {
            cum += counts[g];
            buckets.add(kv("bucket_start", new Secs(300.0 * g), "bucket_end", new Secs(300.0 * (g + 1)), "clicks", counts[g],
                    "share", counts[g] / 4.0, "cumulative_share", cum / 4.0));
        }
        checkRows("time_to_click(M1, '5 minutes', '1 hour'): 12 buckets", r, buckets);

        // daily_metrics, by delivery day, for the first brand: M1's 8 deliveries and a9's failure
        // (sent the same day), and M2's delivery.
        r = run("daily_metrics", "SELECT * FROM smslink.daily_metrics(?, ?, ?)",
                ps -> { ps.setObject(1, utc(2026, 2, 1, 0)); ps.setObject(2, utc(2026, 3, 1, 0)); ps.setLong(3, b); }, DAILY);
        checkRows("daily_metrics(February, brand) in UTC", r, rows(
                kv("day", LocalDate.of(2026, 2, 10), "sent", 10L, "delivered", 9L, "delivery_rate", 0.9, "unique_clicks", 5L,
                   "total_clicks", 6L, "ctr", 5.0 / 9, "conversions", 2.0, "revenue", num("130"), "opt_outs", 1L,
                   "bot_share", 2.0 / 9)));
        r = run("daily_metrics Berlin", "SELECT * FROM smslink.daily_metrics(?, ?, ?, ?)",
                ps -> { ps.setObject(1, utc(2026, 2, 1, 0)); ps.setObject(2, utc(2026, 3, 1, 0)); ps.setLong(3, b);
                        ps.setString(4, "Europe/Berlin"); }, null);
        checkRows("daily_metrics(February, brand, 'Europe/Berlin'): B on the next day", r, rows(
                kv("day", LocalDate.of(2026, 2, 10), "delivered", 5L),
                kv("day", LocalDate.of(2026, 2, 11), "delivered", 4L)));

        // anomalies: the silent campaign, delivered to 60 with no click.
        r = run("anomalies", "SELECT * FROM smslink.anomalies(?, ?, ?::interval)",
                ps -> { ps.setObject(1, utc(2026, 2, 10, 0)); ps.setObject(2, utc(2026, 2, 11, 0)); ps.setString(3, "6 hours"); },
                ANOMALIES);
        checkRows("anomalies(2026-02-10, 2026-02-11): tracking_failure for Silent only", r, rows(
                kv("kind", "tracking_failure", "subject", "campaign " + c3 + " Silent", "observed", 0.0, "expected", null,
                   "message", Pattern.compile("60 messages delivered since .* and not one human click: check the links, the domain and the proxy"))));

        // The views, as a BI tool browses them.
        r = run("campaign_report", "SELECT * FROM smslink.campaign_report WHERE campaign_id = ANY(?) ORDER BY campaign_id",
                ps -> ps.setArray(1, both), CAMPAIGN);
        checkRows("campaign_report: M1 and M2 by hand", r, rows(m1, m2));
        r = run("variant_report", "SELECT * FROM smslink.variant_report WHERE campaign_id = ? ORDER BY variant_id",
                ps -> ps.setLong(1, c1), VARIANT_REPORT);
        checkRows("variant_report: M1's A and B by hand", r, rows(
                concat(kv("campaign_id", c1, "campaign", "M1", "variant_id", vA), varA),
                concat(kv("campaign_id", c1, "campaign", "M1", "variant_id", vB), varB)));

        // Column descriptions through DatabaseMetaData, as BI tools read them.
        for (String view : new String[] {"campaign_report", "variant_report"}) {
            String[] spec = view.equals("campaign_report") ? CAMPAIGN : VARIANT_REPORT;
            List<String> problems = new ArrayList<>();
            List<String> names = new ArrayList<>();
            String ctrRemark = null;
            try (ResultSet cols = dbmd.getColumns(null, "smslink", view, "%")) {
                while (cols.next()) {
                    String name = cols.getString("COLUMN_NAME"), remarks = cols.getString("REMARKS");
                    names.add(name);
                    if (remarks == null || remarks.isBlank()) problems.add(name + " has no description");
                    if (name.equals("ctr")) ctrRemark = remarks;
                    int i = names.size() - 1;
                    if (i < spec.length && !spec[i].split(":")[1].equals(cols.getString("TYPE_NAME")))
                        problems.add(name + " TYPE_NAME " + cols.getString("TYPE_NAME") + ", want " + spec[i].split(":")[1]);
                }
            }
            List<String> wantNames = new ArrayList<>();
            for (String s : spec) wantNames.add(s.split(":")[0]);
            if (!names.equals(wantNames)) problems.add("columns " + names + ", want " + wantNames);
            if (!"Click-through rate: unique_clicks / delivered.".equals(ctrRemark))
                problems.add("ctr's description is " + describe(ctrRemark));
            check("DatabaseMetaData.getColumns(smslink." + view + "): " + names.size()
                    + " columns, each with a description (REMARKS)", problems.isEmpty(), String.join("; ", problems));
        }
        try (ResultSet t = dbmd.getTables(null, "smslink", "%_report", null)) {
            Map<String, String> seen = new LinkedHashMap<>();
            while (t.next()) seen.put(t.getString("TABLE_NAME"), t.getString("TABLE_TYPE") + ": " + t.getString("REMARKS"));
            boolean ok = seen.size() == 2
                    && seen.getOrDefault("campaign_report", "").startsWith("VIEW: Every campaign over all time")
                    && seen.getOrDefault("variant_report", "").startsWith("VIEW: Every variant of every campaign");
            check("DatabaseMetaData.getTables(smslink, %_report): two views with descriptions", ok, seen.toString());
        }

        // Bad input: a clear SQLSTATE through the driver.
        expectError("breakdown(M1, 'colour')", "SELECT * FROM smslink.breakdown(?, ?)",
                ps -> { ps.setLong(1, c1); ps.setString(2, "colour"); }, "22023");
        expectError("metrics_by('colour')", "SELECT * FROM smslink.metrics_by(?)", ps -> ps.setString(1, "colour"), "22023");
        expectError("breakdown(M1, 'hour_of_day', 'Mars/Olympus')", "SELECT * FROM smslink.breakdown(?, ?, ?)",
                ps -> { ps.setLong(1, c1); ps.setString(2, "hour_of_day"); ps.setString(3, "Mars/Olympus"); }, "22023");
        expectError("time_to_click(M1, '0 minutes')", "SELECT * FROM smslink.time_to_click(?, ?::interval)",
                ps -> { ps.setLong(1, c1); ps.setString(2, "0 minutes"); }, "22023");
        expectError("campaign_metrics(include_classes {human,robot})", "SELECT * FROM smslink.campaign_metrics(include_classes => ?)",
                ps -> ps.setArray(1, conn.createArrayOf("text", new String[] {"human", "robot"})), "22023");
        expectError("campaign_metrics(from_ts after to_ts)", "SELECT * FROM smslink.campaign_metrics(NULL, ?, ?)",
                ps -> { ps.setObject(1, utc(2026, 3, 1, 0)); ps.setObject(2, utc(2026, 2, 1, 0)); }, "22023");
        expectError("link_metrics(unknown campaign)", "SELECT * FROM smslink.link_metrics(?)", ps -> ps.setLong(1, 999999999L), "P0002");
        // Experiments: variant_stats on M1 (A and B both 2 clicks of 4 delivered: no lift, too few
        // to decide) and incrementality on the hand-counted holdout test.
        r = run("variant_stats", "SELECT * FROM smslink.variant_stats(?)", ps -> ps.setLong(1, c1), VARIANT_STATS);
        checkRows("variant_stats(M1): n and successes as variant_metrics, equal rates", r, rows(
                kv("variant", "A", "n", 4L, "successes", 2L, "rate", 0.5, "lift", null, "p_value", null,
                   "prob_best", 0.5, "decision", "collecting"),
                kv("variant", "B", "n", 4L, "successes", 2L, "rate", 0.5, "lift", 0.0, "rel_lift", 0.0,
                   "p_value", 1.0, "chi2_p_value", 1.0, "prob_best", 0.5, "decision", "collecting")));
        long hand = scalar("SELECT id FROM smslink.campaign WHERE name = ?", "Hand");
        r = run("incrementality", "SELECT * FROM smslink.incrementality(?, ?::interval)",
                ps -> { ps.setLong(1, hand); ps.setString(2, "7 days"); }, INCREMENTALITY);
        checkRows("incrementality(Hand): 6/20 against 2/10, revenue 11 against 4 per recipient", r, rows(
                kv("treatment_n", 20L, "control_n", 10L, "treatment_converted", 6L, "control_converted", 2L,
                   "treatment_rate", 0.3, "control_rate", 0.2, "lift", 0.1, "rel_lift", 0.5,
                   "incremental_conversions", 2.0, "treatment_revenue_per_recipient", 11.0,
                   "control_revenue_per_recipient", 4.0, "revenue_diff", 7.0, "incremental_revenue", 140.0,
                   "decision", "underpowered")));
        expectError("incrementality(Hand, '0 days')", "SELECT * FROM smslink.incrementality(?, ?::interval)",
                ps -> { ps.setLong(1, hand); ps.setString(2, "0 days"); }, "22023");
        expectError("incrementality(unknown campaign)", "SELECT * FROM smslink.incrementality(?)",
                ps -> ps.setLong(1, 999999999L), "P0002");

        // The connection stays usable after the errors (autocommit).
        r = run("after errors", "SELECT count(*) AS n FROM smslink.campaign_metrics(?)", ps -> ps.setArray(1, both), null);
        checkRows("connection still usable after errors", r, rows(kv("n", 2L)));

        conn.close();
        System.out.println((failed == 0 ? "ok: " : "FAILED: ") + passed + " of " + (passed + failed) + " JDBC checks passed");
        System.exit(failed == 0 ? 0 : 1);
    }

    static Object[] concat(Object[] a, Object[] b) {
        Object[] all = new Object[a.length + b.length];
        System.arraycopy(a, 0, all, 0, a.length);
        System.arraycopy(b, 0, all, a.length, b.length);
        return all;
    }

    /** The key-value pairs without the given key. */
    static Object[] drop(Object[] kv, String key) {
        List<Object> out = new ArrayList<>();
        for (int i = 0; i < kv.length; i += 2) if (!kv[i].equals(key)) { out.add(kv[i]); out.add(kv[i + 1]); }
        return out.toArray();
    }
}

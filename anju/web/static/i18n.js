// The console's words, Chinese first (the default) and English. Keys are used by
// data-i18n / data-i18n-placeholder attributes and by app.js through t().
export const WORDS = {
  zh: {
    title: "安居 · 值班台", token: "团队令牌", signin: "登录", signout: "退出", report: "上月报告",
    signin_failed: "令牌无效", signin_limited: "失败次数过多，请稍后再试",
    offline: "未连接", live: "实时", open_alarms: "当前告警", history: "历史",
    health: "设备健康", estate: "小区", building: "楼栋", kind: "类型", severity: "级别",
    state: "状态", since: "起", until: "止", search: "查询", alarm: "告警", where: "位置",
    age: "已持续", deadline: "升级倒计时", assignee: "负责人", close: "关闭",
    acknowledge: "确认", assign: "指派", comment: "评论", your_name: "姓名", note: "备注",
    assign_to: "指派给", comment_text: "内容", timeline: "时间线", deliveries: "推送记录",
    event: "事件", team: "团队", outcome: "结果", attempts: "次数", any: "全部",
    open_any: "未关闭", count: (n) => `共 ${n} 条`, new_critical: "新的紧急告警：",
    escalated_n: (n) => `已升级 ${n} 次`, overdue: "已超时", none: "—",
    offline_devices: "离线设备", obstructed: "摄像头遮挡", battery_low: "低电量",
    devices_n: "设备", reporting: "已上报", last_reading: "最后上报", ago: "距今",
    problem_devices: "需处理的设备", building_devices: (b) => `${b} 的全部设备`,
    never: "从未上报", healthy: "正常", floor: (f) => `${f} 层`, device: "设备",
    message: "内容", started: "开始", value: "数值", rule: "规则",
    sev: { critical: "紧急", major: "重要", minor: "次要", warning: "提示" },
    st: { raised: "未确认", acknowledged: "已确认", cleared: "已关闭" },
    held: { maintenance: (by) => `维保中，未通知（窗口 #${by}）`,
            inhibited: (by) => `已抑制，未通知（由 ${by}）` },
    ev: { raised: "告警", escalated: "升级", acknowledged: "确认", cleared: "关闭",
          assigned: "指派", commented: "评论" },
    kinds: { elevator: "电梯", smoke: "烟感", water: "二次供水", camera: "高空抛物" },
    out: { pending: "待推送", delivered: "已送达", dead: "失败（待重发）" },
  },
  en: {
    title: "Anju · control room", token: "Team token", signin: "Sign in", signout: "Sign out", report: "Last month's report",
    signin_failed: "Invalid token", signin_limited: "Too many failed sign-ins; try later",
    offline: "offline", live: "live", open_alarms: "Open alarms", history: "History",
    health: "Device health", estate: "Estate", building: "Building", kind: "Kind",
    severity: "Severity", state: "State", since: "From", until: "To", search: "Search",
    alarm: "Alarm", where: "Where", age: "Age", deadline: "Escalates in",
    assignee: "Assignee", close: "Close", acknowledge: "Acknowledge", assign: "Assign",
    comment: "Comment", your_name: "Your name", note: "Note", assign_to: "Assign to",
    comment_text: "Text", timeline: "Timeline", deliveries: "Deliveries", event: "Event",
    team: "Team", outcome: "Outcome", attempts: "Attempts", any: "any", open_any: "open",
    count: (n) => `${n} alarm${n === 1 ? "" : "s"}`, new_critical: "New critical alarm: ",
    escalated_n: (n) => `escalated ${n}×`, overdue: "overdue", none: "—",
    offline_devices: "Offline devices", obstructed: "Cameras obstructed",
    battery_low: "Low battery", devices_n: "Devices", reporting: "Reporting",
    last_reading: "Last reading", ago: "Ago", problem_devices: "Devices needing attention",
    building_devices: (b) => `Every device of ${b}`, never: "never reported",
    healthy: "ok",
    floor: (f) => `floor ${f}`, device: "Device", message: "Message", started: "Started",
    value: "Value", rule: "Rule",
    sev: { critical: "critical", major: "major", minor: "minor", warning: "warning" },
    st: { raised: "unacknowledged", acknowledged: "acknowledged", cleared: "closed" },
    held: { maintenance: (by) => `under maintenance, not sent (window #${by})`,
            inhibited: (by) => `inhibited, not sent (by ${by})` },
    ev: { raised: "raised", escalated: "escalated", acknowledged: "acknowledged",
          cleared: "cleared", assigned: "assigned", commented: "comment" },
    kinds: { elevator: "elevator", smoke: "smoke/heat", water: "water supply",
             camera: "falling object" },
    out: { pending: "pending", delivered: "delivered", dead: "failed (awaiting requeue)" },
  },
};

let lang = localStorage.getItem("anju.lang") === "en" ? "en" : "zh";

export function getLang() { return lang; }

export function setLang(l) {
  lang = l === "en" ? "en" : "zh";
  localStorage.setItem("anju.lang", lang);
  document.documentElement.lang = lang === "en" ? "en" : "zh-CN";
  for (const el of document.querySelectorAll("[data-i18n]")) {
    el.textContent = t(el.dataset.i18n);
  }
  for (const el of document.querySelectorAll("[data-i18n-placeholder]")) {
    el.placeholder = t(el.dataset.i18nPlaceholder);
  }
  document.title = t("title");
}

// t("key"), t("key", arg) for functions, t("sev", "critical") for tables.
export function t(key, arg) {
  const v = WORDS[lang][key];
  if (typeof v === "function") return v(arg);
  if (v && typeof v === "object") return (arg in v) ? v[arg] : String(arg);
  return v === undefined ? key : v;
}

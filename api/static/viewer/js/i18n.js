// All user-visible strings. Chinese is the default; English is a toggle kept in localStorage.
// t(key, vars) looks a key up ("a.b"), substitutes {name} placeholders, falls back to zh, then the key.
// applyI18n(root) refreshes elements marked data-i18n / data-i18n-title / data-i18n-aria-label /
// data-i18n-placeholder; modules that render dynamic text re-render on the "onemap:lang" event.

const STORAGE_KEY = "onemap.lang";

const zh = {
  app: { title: "解放街道 · 三维一张图", subtitle: "蚌埠市龙子湖区 · 4.61 平方公里", loading: "正在加载三维场景…" },
  ui: {
    tools: "工具", map: "三维地图", close: "关闭", cancel: "取消", skipToPanel: "跳到信息面板",
    none: "无", unknown: "未知", loading: "加载中…", error: "出错：{msg}", noData: "暂无数据",
    apply: "应用", from: "从", to: "至", day: "日期", all: "全部", open: "打开", yes: "是", no: "否",
    meters: "{v} 米", km: "{v} 公里", sqm: "{v} 平方米", seconds: "{v} 秒", minutes: "{v} 分钟",
    forbidden: "当前角色无权查看", signInNeeded: "请登录后查看", saved: "已保存 {name}",
  },
  tool: {
    layers: "图层", distance: "测距离", area: "测面积", height: "测高度", stats: "统计",
    heatmap: "热力图", patrol: "巡查回放", screenshot: "截图", bigscreen: "大屏模式", access: "步行可达",
    targets: "目标考核",
  },
  auth: {
    title: "登录", token: "访问令牌", signIn: "登录", signOut: "退出",
    username: "用户名", password: "密码", useToken: "使用访问令牌（设备、大屏）",
    badLogin: "用户名或密码错误", throttled: "失败次数过多，请 {s} 秒后再试", needCredentials: "请输入用户名和密码，或访问令牌",
    anonymous: "未登录", badToken: "令牌无效、已过期或已吊销", signedInAs: "{name}（{role}）",
    roles: { admin: "管理员", operator: "值班员", planner: "规划人员", viewer: "访客", device: "设备", anonymous: "匿名" },
  },
  layers: {
    title: "图层", buildingStyle: "建筑着色", byUse: "按用途", byHeight: "按高度",
    imagery: "正射影像", mesh: "实景三维", basemap: "底图", naturalEarth: "全球概览（离线）", online: "在线底图",
    groups: { city: "三维城市", ops: "业务图层" },
    buildings: "建筑", roads: "道路", vegetation: "植被", furniture: "城市部件", pointcloud: "点云",
    terrain: "地形", water: "水面", events: "事件", cameras: "摄像头", patrol: "巡查轨迹",
    workers: "巡查人员位置", grid: "网格", communities: "社区", geofences: "电子围栏", checkpoints: "巡查点",
    facilities: "服务设施", isochrones: "步行等时线", targets: "社区目标达成", cameraGaps: "监控盲区",
    unavailable: "（不可用）", failed: "{name} 加载失败：{msg}",
  },
  use: {
    residential: "住宅", commercial: "商业", office: "办公", school: "学校", hospital: "医院",
    market: "市场", public: "公共建筑", industrial: "工业", courtyard_house: "院落民居", other: "其他",
  },
  heightClass: { h0: "< 10 米", h1: "10–24 米", h2: "24–50 米", h3: "50–100 米", h4: "≥ 100 米" },
  attr: {
    id: "编号", name: "名称", floors: "层数", height: "高度（米）", use: "用途", roof_type: "屋顶",
    community: "社区", community_id: "社区", grid_id: "网格", compound: "小区", class: "等级",
    width: "宽度（米）", lanes: "车道数", species: "树种", crown_diameter: "冠幅（米）", type: "类型",
    kind: "类别", status: "状态", category: "类别", priority: "等级", source: "来源",
    description: "描述", reported_at: "上报时间", deadline_at: "处置时限", worker_id: "处置人",
    building_id: "建筑", mount_height: "安装高度（米）", heading: "朝向（度）", pitch: "俯仰（度）",
    hfov: "水平视场角（度）", range_m: "视距（米）", stream_url: "视频流", setting: "位置",
    staff_name: "网格员", staff_phone: "电话", lod: "精细度", roof: "屋顶",
    roof_height_m: "屋顶高度（米）", staff_id: "网格员编号", radius_m: "半径（米）", max_dwell_min: "最长停留（分钟）",
    day: "日期", shift_start: "上班", shift_end: "下班", n_fixes: "定位点数", n_spikes: "跳点", n_jitter: "抖动点",
    length_m: "长度（米）", status_changed_at: "状态变更", updated_at: "更新时间", reopened_count: "重办次数",
    accepted_at: "受理时间", dispatched_at: "派遣时间", handled_at: "处置时间", verified_at: "核查时间",
    closed_at: "结案时间", rejected_at: "驳回时间", device_id: "设备", speed: "速度（米/秒）", t: "时间",
    distance_m: "距离（米）", fix_age_s: "定位时长（秒）", t_display: "最近定位", bridge: "桥梁", deck_height: "桥面高度（米）",
    layer: "图层", features: "要素数", ground_height: "地面高程（米）",
  },
  building: {
    title: "建筑 {id}", attributes: "属性", database: "数据库记录", population: "人口概况",
    notInDb: "数据库中未找到该建筑", suppressed: "人数少于 5，已隐藏",
  },
  population: {
    total: "总人口", registered: "户籍人口", floating: "流动人口", age60: "60 岁以上", age_60_plus: "60 岁以上",
    age80: "80 岁以上", age_80_plus: "80 岁以上", children: "儿童", children_under_14: "14 岁以下儿童",
    special_care: "重点关爱", care: "重点关爱",
    households: "户数",
  },
  event: {
    title: "事件 {id}", history: "处置流程", nearest: "最近的巡查人员", cameras: "可视摄像头",
    noCameras: "没有摄像头能看到该位置", noWorkers: "附近没有在岗人员", overdue: "已超时",
    distance: "距离", age: "定位时间", ago: "{v} 前", newEvent: "新事件：{cat}",
    actor: "操作人", note: "备注", at: "时间", fromTo: "{from} → {to}",
    dispatchTitle: "调度", dispatch: "派遣", dispatchSuggested: "派遣推荐人员", dispatchedTo: "已派遣 {worker}",
    bySuggestion: "可派人员（按路网到达时间）", noneAvailable: "暂无在岗可派人员，可指定附近人员",
    etaText: "预计 {eta} 到达，路程 {m} 米", notDispatchable: "该事件当前不能调度",
    status: {
      reported: "已上报", accepted: "已受理", dispatched: "已派遣", handled: "已处置",
      verified: "已核查", closed: "已结案", rejected: "已驳回",
    },
    category: {
      city_appearance: "市容环境", street_order: "街面秩序", sanitation: "环境卫生",
      municipal_facilities: "市政设施", greening: "园林绿化", illegal_construction: "违法建设",
      safety_hazard: "安全隐患", dispute: "矛盾纠纷", burglary: "入室盗窃", theft: "盗窃", family_conflict: "家庭矛盾",
    },
    source: { grid_worker: "网格员", resident: "居民", camera: "摄像头" },
  },
  camera: {
    title: "摄像头 {id}", stream: "实时视频", offline: "视频流离线", offlineHint: "无法播放：{url}",
    online: "在线", statusOffline: "离线", street: "街面", high_altitude: "高空瞭望",
  },
  heat: {
    title: "事件热力图", window: "时间窗", days: "{n} 天", endDay: "截止日期", category: "事件类别",
    events: "{n} 起事件", showPoints: "显示事件点",
  },
  grid: {
    title: "网格专题图", metric: "指标", events: "事件数", overdue: "超时事件", open: "未结事件",
    population: "人口", legend: "图例", cell: "网格 {id}",
  },
  stats: {
    title: "统计", by: "统计单元", byGrid: "按网格", byCommunity: "按社区", metric: "指标",
    eventsByCategory: "各类事件（未结）", openOverdue: "未结 / 超时事件", population: "人口",
    top: "前 {n} 名", open: "未结", overdue: "超时",
  },
  patrol: {
    title: "巡查轨迹回放", worker: "人员", day: "日期", start: "开始", end: "结束", play: "回放",
    mileage: "当日里程 {km} 公里", noTrack: "该时段没有轨迹", loaded: "已加载 {name} 的轨迹",
  },
  measure: {
    distanceHint: "单击添加点，双击或右键结束，Esc 取消", areaHint: "单击添加顶点，双击或右键结束，Esc 取消",
    heightHint: "单击底部一点，再单击顶部一点", distance: "距离 {v}", area: "面积 {v}",
    height: "高差 {v}", horizontal: "水平距离 {v}", noSurface: "此处没有可量测的表面",
  },
  big: {
    title: "解放街道社会治理一张图 · 指挥中心", alarms: "实时告警", eventsToday: "今日事件",
    overdue: "超时未办", patrollers: "在岗巡查", cameras: "摄像头在线", live: "实时连接",
    liveOk: "实时数据已连接", liveLost: "实时数据连接中断，正在重连…", tour: "自动巡游",
    alarm: {
      left_patrol_area: "{worker} 离开巡查区域", no_parking_dwell: "{worker} 在禁停区停留超时",
      speeding: "{worker} 超速", stationary: "{worker} 长时间静止（疑似倒地）", sos: "{worker} 发出 SOS 求救",
      event: "新事件 {id}：{cat}（{prio} 级）",
    },
  },
  access: {
    title: "步行可达性", kind: "设施类型", speed: "步行速度", minutes: "覆盖时间", community: "社区", group: "人群",
    speedDefault: "一般 1.2 米/秒", speedElderly: "老年人 0.8 米/秒", within: "{m} 分钟内", beyond: "15 分钟以上或不可达",
    uncovered: "{n} 栋建筑 {m} 分钟内无此类设施", sites: "建议新增选址（贪心最大覆盖）",
    siteLine: "新增覆盖约 {n} 人（{b} 栋建筑）",
    groups: { total: "常住人口", age_80_plus: "80 岁以上", disabled: "残疾人", low_income: "低保" },
    kinds: {
      service_station: "社区服务站", service_terminal: "便民服务终端", elderly_care: "养老机构", clinic: "卫生服务站",
      school: "学校", police: "警务室", convenience_store: "便利店",
    },
  },
  targets: {
    title: "社区目标考核", asOf: "评估时间 {t}", value: "当前值", change: "较基线", expected: "应达 {v}",
    level: "目标 ≥ {v}", levelAtMost: "目标 ≤ {v}", target: "目标 {v}", deadline: "截止 {d}",
    communities: "{on} / {n} 个社区达标或进度正常", none: "未配置目标",
    status: { met: "已达成", on_track: "进度正常", off_track: "进度滞后", missed: "未达成", no_data: "无数据" },
    legend: "社区着色：目标进度",
  },
  shot: { done: "截图已保存", failed: "截图失败" },
};

const en = {
  app: { title: "Jiefang Street · 3D One Map", subtitle: "Longzihu District, Bengbu · 4.61 km²", loading: "Loading the 3D scene…" },
  ui: {
    tools: "Tools", map: "3D map", close: "Close", cancel: "Cancel", skipToPanel: "Skip to the info panel",
    none: "None", unknown: "Unknown", loading: "Loading…", error: "Error: {msg}", noData: "No data",
    apply: "Apply", from: "From", to: "To", day: "Day", all: "All", open: "Open", yes: "Yes", no: "No",
    meters: "{v} m", km: "{v} km", sqm: "{v} m²", seconds: "{v} s", minutes: "{v} min",
    forbidden: "Your role may not see this", signInNeeded: "Sign in to see this", saved: "Saved {name}",
  },
  tool: {
    layers: "Layers", distance: "Distance", area: "Area", height: "Height", stats: "Statistics",
    heatmap: "Heatmap", patrol: "Patrol playback", screenshot: "Screenshot", bigscreen: "Big screen",
    access: "Walking access", targets: "Targets",
  },
  auth: {
    title: "Sign in", token: "Access token", signIn: "Sign in", signOut: "Sign out",
    username: "User name", password: "Password", useToken: "Use an access token (devices, kiosks)",
    badLogin: "Wrong user name or password", throttled: "Too many failed attempts; try again in {s} s",
    needCredentials: "Enter user name and password, or an access token",
    anonymous: "Not signed in", badToken: "Invalid, expired or revoked token", signedInAs: "{name} ({role})",
    roles: { admin: "Administrator", operator: "Operator", planner: "Planner", viewer: "Viewer", device: "Device", anonymous: "Anonymous" },
  },
  layers: {
    title: "Layers", buildingStyle: "Building colours", byUse: "By use", byHeight: "By height",
    imagery: "Orthophoto", mesh: "Reality mesh", basemap: "Base map", naturalEarth: "Natural Earth (offline)",
    online: "Online base map",
    groups: { city: "3D city", ops: "Operations" },
    buildings: "Buildings", roads: "Roads", vegetation: "Vegetation", furniture: "Street furniture",
    pointcloud: "Point cloud", terrain: "Terrain", water: "Water", events: "Events", cameras: "Cameras",
    patrol: "Patrol tracks", workers: "Patrollers (live)", grid: "Grid cells", communities: "Communities",
    geofences: "Geofences", checkpoints: "Checkpoints", unavailable: "(unavailable)",
    facilities: "Facilities", isochrones: "Walking isochrones", targets: "Community targets", cameraGaps: "Camera gaps",
    failed: "{name} failed to load: {msg}",
  },
  use: {
    residential: "Residential", commercial: "Commercial", office: "Office", school: "School",
    hospital: "Hospital", market: "Market", public: "Public", industrial: "Industrial",
    courtyard_house: "Courtyard house", other: "Other",
  },
  heightClass: { h0: "< 10 m", h1: "10–24 m", h2: "24–50 m", h3: "50–100 m", h4: "≥ 100 m" },
  attr: {
    id: "Id", name: "Name", floors: "Floors", height: "Height (m)", use: "Use", roof_type: "Roof",
    community: "Community", community_id: "Community", grid_id: "Grid cell", compound: "Compound",
    class: "Class", width: "Width (m)", lanes: "Lanes", species: "Species", crown_diameter: "Crown (m)",
    type: "Type", kind: "Kind", status: "Status", category: "Category", priority: "Priority",
    source: "Source", description: "Description", reported_at: "Reported", deadline_at: "Deadline",
    worker_id: "Assignee", building_id: "Building", mount_height: "Mount height (m)",
    heading: "Heading (°)", pitch: "Pitch (°)", hfov: "Horizontal FOV (°)", range_m: "Range (m)",
    stream_url: "Stream", setting: "Setting", staff_name: "Grid worker", staff_phone: "Phone",
    lod: "Level of detail", roof: "Roof",
    roof_height_m: "Roof height (m)", staff_id: "Staff id", radius_m: "Radius (m)", max_dwell_min: "Max dwell (min)",
    day: "Day", shift_start: "Shift start", shift_end: "Shift end", n_fixes: "Fixes", n_spikes: "Spikes",
    n_jitter: "Jitter fixes", length_m: "Length (m)", status_changed_at: "Status changed", updated_at: "Updated",
    reopened_count: "Reopened", accepted_at: "Accepted", dispatched_at: "Dispatched", handled_at: "Handled",
    verified_at: "Verified", closed_at: "Closed", rejected_at: "Rejected", device_id: "Device", speed: "Speed (m/s)",
    t: "Time", distance_m: "Distance (m)", fix_age_s: "Fix age (s)", t_display: "Last fix", bridge: "Bridge",
    deck_height: "Deck height (m)", layer: "Layer", features: "Features", ground_height: "Ground level (m)",
  },
  building: {
    title: "Building {id}", attributes: "Attributes", database: "Database record", population: "Population",
    notInDb: "This building is not in the database", suppressed: "Fewer than 5 people: hidden",
  },
  population: {
    total: "Total", registered: "Registered", floating: "Floating", age60: "Aged 60+", age_60_plus: "Aged 60+",
    age80: "Aged 80+", age_80_plus: "Aged 80+", children: "Children", children_under_14: "Children under 14",
    special_care: "Special care",
    care: "Special care", households: "Households",
  },
  event: {
    title: "Event {id}", history: "Lifecycle", nearest: "Nearest patrollers", cameras: "Cameras that see it",
    noCameras: "No camera sees this place", noWorkers: "No patroller on duty nearby", overdue: "Overdue",
    distance: "Distance", age: "Fix age", ago: "{v} ago", newEvent: "New event: {cat}",
    actor: "Actor", note: "Note", at: "At", fromTo: "{from} → {to}",
    dispatchTitle: "Dispatch", dispatch: "Dispatch", dispatchSuggested: "Dispatch the suggested worker",
    dispatchedTo: "Dispatched {worker}", bySuggestion: "Available workers (by road ETA)",
    noneAvailable: "Nobody available on duty; choose a nearby worker", etaText: "ETA {eta}, {m} m by road",
    notDispatchable: "This event cannot be dispatched now",
    status: {
      reported: "Reported", accepted: "Accepted", dispatched: "Dispatched", handled: "Handled",
      verified: "Verified", closed: "Closed", rejected: "Rejected",
    },
    category: {
      city_appearance: "City appearance", street_order: "Street order", sanitation: "Sanitation",
      municipal_facilities: "Municipal facilities", greening: "Greening",
      illegal_construction: "Illegal construction", safety_hazard: "Safety hazard", dispute: "Dispute",
      burglary: "Burglary", theft: "Theft", family_conflict: "Family conflict",
    },
    source: { grid_worker: "Grid worker", resident: "Resident", camera: "Camera" },
  },
  camera: {
    title: "Camera {id}", stream: "Live video", offline: "Stream offline", offlineHint: "Cannot play: {url}",
    online: "Online", statusOffline: "Offline", street: "Street", high_altitude: "High-altitude",
  },
  heat: {
    title: "Event heatmap", window: "Window", days: "{n} days", endDay: "Up to", category: "Category",
    events: "{n} events", showPoints: "Show event points",
  },
  grid: {
    title: "Grid choropleth", metric: "Metric", events: "Events", overdue: "Overdue events", open: "Open events",
    population: "Population", legend: "Legend", cell: "Grid cell {id}",
  },
  stats: {
    title: "Statistics", by: "Unit", byGrid: "By grid cell", byCommunity: "By community", metric: "Metric",
    eventsByCategory: "Open events by category", openOverdue: "Open / overdue events", population: "Population",
    top: "Top {n}", open: "Open", overdue: "Overdue",
  },
  patrol: {
    title: "Patrol playback", worker: "Worker", day: "Day", start: "Start", end: "End", play: "Play",
    mileage: "{km} km that day", noTrack: "No track in this window", loaded: "Track of {name} loaded",
  },
  measure: {
    distanceHint: "Click to add points; double-click or right-click to finish; Esc cancels",
    areaHint: "Click to add vertices; double-click or right-click to finish; Esc cancels",
    heightHint: "Click a point at the bottom, then one at the top", distance: "Distance {v}", area: "Area {v}",
    height: "Height difference {v}", horizontal: "Horizontal {v}", noSurface: "No surface to measure here",
  },
  big: {
    title: "Jiefang Street One Map · Command Centre", alarms: "Live alarms", eventsToday: "Events today",
    overdue: "Overdue", patrollers: "Patrollers on duty", cameras: "Cameras online", live: "Live link",
    liveOk: "Live data connected", liveLost: "Live data lost, reconnecting…", tour: "Camera tour",
    alarm: {
      left_patrol_area: "{worker} left the patrol area", no_parking_dwell: "{worker} stayed too long in a no-parking zone",
      speeding: "{worker} speeding", stationary: "{worker} motionless for a long time (man down?)", sos: "SOS from {worker}",
      event: "New event {id}: {cat} (priority {prio})",
    },
  },
  access: {
    title: "Walking access", kind: "Facility kind", speed: "Walking speed", minutes: "Within", community: "Community",
    group: "Group", speedDefault: "Default 1.2 m/s", speedElderly: "Elderly 0.8 m/s", within: "within {m} min",
    beyond: "over 15 min or unreachable", uncovered: "{n} buildings have none within {m} min",
    sites: "Candidate new sites (greedy maximal coverage)", siteLine: "covers about {n} more residents ({b} buildings)",
    groups: { total: "Residents", age_80_plus: "Aged 80+", disabled: "Disabled", low_income: "Low income" },
    kinds: {
      service_station: "Service station", service_terminal: "Service terminal", elderly_care: "Elderly care",
      clinic: "Clinic", school: "School", police: "Police post", convenience_store: "Convenience store",
    },
  },
  targets: {
    title: "Community targets", asOf: "Evaluated {t}", value: "Current", change: "vs baseline", expected: "expected {v}",
    level: "target ≥ {v}", levelAtMost: "target ≤ {v}", target: "target {v}", deadline: "deadline {d}",
    communities: "{on} / {n} communities met or on track", none: "No targets configured",
    status: { met: "Met", on_track: "On track", off_track: "Off track", missed: "Missed", no_data: "No data" },
    legend: "Communities coloured by target progress",
  },
  shot: { done: "Screenshot saved", failed: "Screenshot failed" },
};

const DICTS = { zh, en };
let lang = readLang();

function readLang() {
  const fromUrl = new URLSearchParams(location.search).get("lang");
  if (fromUrl && fromUrl in DICTS) return fromUrl;
  try {
    const stored = localStorage.getItem(STORAGE_KEY);
    if (stored && stored in DICTS) return stored;
  } catch { /* storage disabled */ }
  return "zh";
}

function lookup(dict, key) {
  let node = dict;
  for (const part of key.split(".")) {
    if (node == null || typeof node !== "object") return undefined;
    node = node[part];
  }
  return typeof node === "string" ? node : undefined;
}

/** Translate `key`; `{name}` placeholders come from `vars`. Unknown keys return `fallback` or the key. */
export function t(key, vars = {}, fallback = undefined) {
  const text = lookup(DICTS[lang], key) ?? lookup(zh, key) ?? fallback ?? key;
  return text.replace(/\{(\w+)\}/g, (m, name) => (name in vars ? String(vars[name]) : m));
}

/** Translate a code under a namespace (e.g. tv("use", "school")), falling back to the raw code. */
export function tv(namespace, code) {
  if (code === null || code === undefined || code === "") return "—";
  return t(`${namespace}.${code}`, {}, String(code));
}

export function getLang() {
  return lang;
}

export function setLang(next) {
  if (!(next in DICTS) || next === lang) return;
  lang = next;
  try { localStorage.setItem(STORAGE_KEY, lang); } catch { /* storage disabled */ }
  applyI18n(document);
  document.dispatchEvent(new CustomEvent("onemap:lang", { detail: { lang } }));
}

const NUMBER_FORMATS = {};
/** Locale-aware number with at most `digits` decimals. */
export function fmtNumber(value, digits = 0) {
  if (value === null || value === undefined || Number.isNaN(Number(value))) return "—";
  const key = `${lang}:${digits}`;
  NUMBER_FORMATS[key] ??= new Intl.NumberFormat(lang === "zh" ? "zh-CN" : "en-GB", {
    maximumFractionDigits: digits, minimumFractionDigits: 0,
  });
  return NUMBER_FORMATS[key].format(Number(value));
}

/** Local date-time (Asia/Shanghai, the district's zone). */
export function fmtTime(value) {
  if (!value) return "—";
  const d = value instanceof Date ? value : new Date(value);
  if (Number.isNaN(d.getTime())) return String(value);
  return d.toLocaleString(lang === "zh" ? "zh-CN" : "en-GB", { timeZone: "Asia/Shanghai", hour12: false });
}

export function fmtDuration(seconds) {
  const s = Math.max(0, Math.round(Number(seconds) || 0));
  if (s < 90) return t("ui.seconds", { v: s });
  return t("ui.minutes", { v: fmtNumber(s / 60, 0) });
}

export function applyI18n(root = document) {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-title]")) el.title = t(el.dataset.i18nTitle);
  for (const el of root.querySelectorAll("[data-i18n-aria-label]")) {
    el.setAttribute("aria-label", t(el.dataset.i18nAriaLabel));
  }
  for (const el of root.querySelectorAll("[data-i18n-placeholder]")) el.placeholder = t(el.dataset.i18nPlaceholder);
  if (root === document) document.title = t("app.title");
}
